// Miniport's JavaScript runtime: the stable entry point, served at /sdk/miniport-runtime.js.
//
//   import { createRuntime } from 'https://miniport.example.com/sdk/miniport-runtime.js';
//   const runtime = createRuntime({ appid, token });   // token: a runtime token for the user
//   await runtime.launch({ path: 'pages/index/index', query: 'id=1', scene: 1001 });
//   const wx = runtime.wx;                              // WeChat-compatible calls
//   const { fetchedData } = await wx.getBackgroundFetchData({ fetchType: 'pre', waitMs: 2000 });
//   wx.onBackgroundFetchData((res) => render(res.fetchedData));
//
// The codeless analytics evaluator is exported too (the analytics runtime will use it).

export { createRuntime, ERRNO, invoke, Runtime, VERSION, WxError } from './wx.js';
export { Evaluator } from './evaluator.js';
