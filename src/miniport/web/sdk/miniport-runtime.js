// Miniport's JavaScript runtime: the stable entry point, served at /sdk/miniport-runtime.js.
//
//   import { createRuntime } from 'https://miniport.example.com/sdk/miniport-runtime.js';
//   const runtime = createRuntime({ appid, token });   // token: a runtime token for the user
//   await runtime.launch({ path: 'pages/index/index', query: 'id=1', scene: 1001 });
//   const wx = runtime.wx;                              // WeChat-compatible calls
//   const { fetchedData } = await wx.getBackgroundFetchData({ fetchType: 'pre', waitMs: 2000 });
//   wx.onBackgroundFetchData((res) => render(res.fetchedData));
//
//   wx.reportAnalytics('purchase', { price: 120, color: 'red' });   // batched, kept offline
//
// The calls mini-program code makes first answer from the device the host describes
// (`system`, keys named with a `$`; a browser fills in what it can tell) and keep storage per app:
//
//   const runtime = createRuntime({ appid, token, system: { $platform: 'ios', $model: 'iPhone 15',
//     $os_version: '17.2', $mp_version: '1.2.0', $env: 'release', $network: 'wifi' } });
//   wx.getAppBaseInfo(); wx.canIUse('getStorage'); wx.getSystemInfoSync(); wx.setStorageSync('k', 1);
//
// Every analytics batch carries these properties as its `context`, with the runtime's own
// `$session` and the launch `$scene`; the container's lifecycle calls (below) also report the
// built-in events `$launch`, `$show`, `$hide`, `$pageview` and `$pageleave` (lifecycle.js):
//
//   runtime.analytics.launch(Date.now(), { path, query, scene });   // cold, then warm
//   runtime.analytics.pageShow(Date.now(), 'pages/list/list', 'id=1');
//   runtime.analytics.pageHide(Date.now(), 'pages/list/list');       // $pageleave, duration_ms
//   runtime.analytics.background(Date.now());                        // $hide
//   runtime.system.setNetwork('4g');                                  // onNetworkStatusChange
//
// Analytics for containers (codeless events): the configuration in force for the user follows
// the event stream; the container drives the evaluator with its page lifecycle and taps, and
// whatever a configured event emits is reported like reportAnalytics:
//
//   await runtime.analytics.fetchConfig();            // published, or a running test's
//   runtime.analytics.onConfig(({ version, testId }) => ...);
//   runtime.analytics.launch(Date.now());
//   runtime.analytics.pageLoad(Date.now(), 'pages/list/list', page.data);
//   runtime.analytics.pageShow(Date.now(), 'pages/list/list');
//   runtime.analytics.click(Date.now(), 'pages/list/list', { id, classes, dataset, indexes });
//   runtime.analytics.onReport((notice) => ...);      // queued / sent / failed / dropped

export { createRuntime, ERRNO, EVENT_TYPES, invoke, Runtime, VERSION, WxError } from './wx.js';
export { Analytics, DEFAULTS as ANALYTICS_DEFAULTS, MAX_BATCH, newEventId } from './analytics.js';
export { Evaluator } from './evaluator.js';
export { BUILTIN_EVENTS, Lifecycle, SESSION_TIMEOUT_MS, queryString } from './lifecycle.js';
export { MAX_ITEM_BYTES, MAX_TOTAL_BYTES, MemoryStorage, WxStorage } from './storage.js';
export { browserSystem, NETWORK_TYPES, System } from './system.js';
