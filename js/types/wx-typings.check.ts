// Type check (tsc --noEmit, run by `npm test`): the runtime's wx calls take and give exactly what
// the published `miniprogram-api-typings` declare, so WeChat code type-checks against Miniport's
// runtime unchanged. tsc also checks the runtime's own JSDoc types (checkJs).
import { createRuntime } from '../../src/miniport/web/sdk/wx.js';

const wx = createRuntime({ appid: 'mp0', token: 'token' }).wx;
type Ours = typeof wx;
type Theirs = WechatMiniprogram.Wx;

type Assert<T extends true> = T;
type Extends<A, B> = [A] extends [B] ? true : false;
/** Each assignable to the other. */
type Same<A, B> = Extends<A, B> extends true ? Extends<B, A> : false;
type Option<F extends (...args: any) => any> = NonNullable<Parameters<F>[0]>;
type Fn = (...args: any) => any;
type SuccessResult<O> = O extends { success?: infer S } ? Parameters<Extract<S, Fn>>[0] : never;
type FailResult<O> = O extends { fail?: infer S } ? Parameters<Extract<S, Fn>>[0] : never;

// --- option objects ---
export type Options = [
  Assert<Same<Option<Ours['setBackgroundFetchToken']>, WechatMiniprogram.SetBackgroundFetchTokenOption>>,
  Assert<Same<Option<Ours['getBackgroundFetchToken']>, WechatMiniprogram.GetBackgroundFetchTokenOption>>,
  Assert<Same<Option<Ours['getBackgroundFetchData']>, WechatMiniprogram.GetBackgroundFetchDataOption>>,
  Assert<Same<Option<Ours['login']>, WechatMiniprogram.LoginOption>>,
  Assert<Same<Parameters<Ours['onBackgroundFetchData']>[0], WechatMiniprogram.OnBackgroundFetchDataCallback>>,
  Assert<Same<Parameters<Ours['reportAnalytics']>, Parameters<Theirs['reportAnalytics']>>>,
  Assert<Same<Parameters<Ours['reportEvent']>, Parameters<Theirs['reportEvent']>>>,
];

// --- reportAnalytics / reportEvent return nothing, as WeChat's ---
export type Returns = [
  Assert<Same<ReturnType<Ours['reportAnalytics']>, ReturnType<Theirs['reportAnalytics']>>>,
  Assert<Same<ReturnType<Ours['reportEvent']>, ReturnType<Theirs['reportEvent']>>>,
  Assert<Same<ReturnType<Ours['reportAnalytics']>, void>>,
];

// --- results given to success / fail, and the promise ---
export type Results = [
  Assert<Same<SuccessResult<Option<Ours['getBackgroundFetchData']>>,
    WechatMiniprogram.GetBackgroundFetchDataSuccessCallbackResult>>,
  Assert<Same<SuccessResult<Option<Ours['getBackgroundFetchToken']>>,
    WechatMiniprogram.GetBackgroundFetchTokenSuccessCallbackResult>>,
  Assert<Same<SuccessResult<Option<Ours['setBackgroundFetchToken']>>, WechatMiniprogram.GeneralCallbackResult>>,
  Assert<Same<SuccessResult<Option<Ours['login']>>, WechatMiniprogram.LoginSuccessCallbackResult>>,
  Assert<Same<Parameters<Parameters<Ours['onBackgroundFetchData']>[0]>[0],
    WechatMiniprogram.OnBackgroundFetchDataListenerResult>>,
  Assert<Same<FailResult<Option<Ours['getBackgroundFetchData']>>, WechatMiniprogram.GeneralCallbackResult>>,
  Assert<Same<FailResult<Option<Ours['login']>>, WechatMiniprogram.LoginFailCallbackErr>>,
];

// --- whole methods: ours stands in wherever WeChat's is expected ---
export const methods: Pick<Theirs, 'setBackgroundFetchToken' | 'getBackgroundFetchToken'
  | 'getBackgroundFetchData' | 'onBackgroundFetchData' | 'login' | 'reportAnalytics'
  | 'reportEvent'> = wx;

// --- the calls mini-program code makes first: device, app, network, storage ---
export type BaseCalls = [
  Assert<Same<ReturnType<Ours['getSystemInfoSync']>, WechatMiniprogram.SystemInfo>>,
  Assert<Same<ReturnType<Ours['getDeviceInfo']>, WechatMiniprogram.DeviceInfo>>,
  Assert<Same<ReturnType<Ours['getWindowInfo']>, WechatMiniprogram.WindowInfo>>,
  Assert<Same<ReturnType<Ours['getAppBaseInfo']>, WechatMiniprogram.AppBaseInfo>>,
  Assert<Same<ReturnType<Ours['getAccountInfoSync']>, WechatMiniprogram.AccountInfo>>,
  Assert<Same<ReturnType<Ours['getStorageInfoSync']>, WechatMiniprogram.GetStorageInfoSyncOption>>,
  Assert<Same<ReturnType<Ours['canIUse']>, boolean>>,
  Assert<Same<Parameters<Ours['canIUse']>, Parameters<Theirs['canIUse']>>>,
  Assert<Same<Option<Ours['getSystemInfo']>, WechatMiniprogram.GetSystemInfoOption>>,
  Assert<Same<Option<Ours['getNetworkType']>, WechatMiniprogram.GetNetworkTypeOption>>,
  Assert<Same<Option<Ours['setStorage']>, WechatMiniprogram.SetStorageOption>>,
  Assert<Same<Option<Ours['getStorage']>, WechatMiniprogram.GetStorageOption>>,
  Assert<Same<Option<Ours['removeStorage']>, WechatMiniprogram.RemoveStorageOption>>,
  Assert<Same<Option<Ours['clearStorage']>, WechatMiniprogram.ClearStorageOption>>,
  Assert<Same<Option<Ours['getStorageInfo']>, WechatMiniprogram.GetStorageInfoOption>>,
  Assert<Same<Parameters<Ours['onNetworkStatusChange']>[0], WechatMiniprogram.OnNetworkStatusChangeCallback>>,
  Assert<Same<SuccessResult<Option<Ours['getNetworkType']>>,
    WechatMiniprogram.GetNetworkTypeSuccessCallbackResult>>,
  Assert<Same<SuccessResult<Option<Ours['getStorage']>>, WechatMiniprogram.GetStorageSuccessCallbackResult>>,
  Assert<Same<SuccessResult<Option<Ours['getStorageInfo']>>,
    WechatMiniprogram.GetStorageInfoSuccessCallbackOption>>,
  Assert<Same<FailResult<Option<Ours['getStorage']>>, WechatMiniprogram.GeneralCallbackResult>>,
];

export const baseMethods: Pick<Theirs, 'canIUse' | 'getSystemInfoSync' | 'getSystemInfo'
  | 'getDeviceInfo' | 'getWindowInfo' | 'getAppBaseInfo' | 'getAccountInfoSync' | 'getNetworkType'
  | 'onNetworkStatusChange' | 'offNetworkStatusChange' | 'setStorage' | 'setStorageSync'
  | 'getStorage' | 'getStorageSync' | 'removeStorage' | 'removeStorageSync' | 'clearStorage'
  | 'clearStorageSync' | 'getStorageInfo' | 'getStorageInfoSync'> = wx;

// --- a sample app.js's first lines, unchanged ---
export async function appStart(): Promise<string> {
  const base = wx.getAppBaseInfo();
  const theme: 'dark' | 'light' | undefined = base.theme;
  if (wx.canIUse('getUpdateManager')) return 'update';
  const { networkType } = await wx.getNetworkType();
  wx.onNetworkStatusChange((res) => void [res.isConnected, res.networkType]);
  wx.setStorageSync('visits', Number(wx.getStorageSync<number>('visits') || 0) + 1);
  const { data } = await wx.getStorage<{ id: number }>({ key: 'profile' });
  wx.getStorage({ key: 'x', success: (res) => void res.data, fail: (err) => void err.errMsg });
  const info: WechatMiniprogram.GetStorageInfoSuccessCallbackOption = await wx.getStorageInfo();
  const env: 'develop' | 'trial' | 'release' = wx.getAccountInfoSync().miniProgram.envVersion;
  const none: void = wx.setStorage({ key: 'k', data: 1, complete: () => undefined });
  // @ts-expect-error setStorage needs a key
  wx.setStorage({ data: 1 });
  void [theme, data.id, info.limitSize, none];
  return base.SDKVersion + networkType + env + wx.getSystemInfoSync().platform;
}

// --- WeChat-style code, unchanged ---
export async function wechatStyle(): Promise<string> {
  wx.setBackgroundFetchToken({ token: 't', success: (res) => res.errMsg.toUpperCase() });
  wx.getBackgroundFetchData({
    fetchType: 'pre',
    success(res) {
      const data: string = res.fetchedData;
      const scene: number = res.scene;
      void [data, scene, res.path, res.query, res.timeStamp];
    },
    fail(err) {
      void err.errMsg.length;
    },
  });
  wx.onBackgroundFetchData((res) => void [res.fetchType, res.fetchedData, res.timeStamp]);
  const periodic: WechatMiniprogram.GetBackgroundFetchDataSuccessCallbackResult =
    await wx.getBackgroundFetchData({ fetchType: 'periodic' });
  const login: WechatMiniprogram.LoginSuccessCallbackResult = await wx.login();
  const token: WechatMiniprogram.GetBackgroundFetchTokenSuccessCallbackResult =
    await wx.getBackgroundFetchToken();
  // with a callback WeChat returns nothing, not a promise
  const nothing: void = wx.login({ success: () => undefined });
  // analytics, as in WeChat's documentation
  const reported: void = wx.reportAnalytics('purchase', { price: 120, color: 'red' });
  wx.reportEvent('goods_click', { price: 12 });
  wx.reportEvent('app_launch');
  void reported;
  // @ts-expect-error reportAnalytics needs its data
  wx.reportAnalytics('purchase');
  // @ts-expect-error an event name is a string
  wx.reportAnalytics(42, {});
  // @ts-expect-error a token is required
  wx.setBackgroundFetchToken({});
  // @ts-expect-error fetchType is required
  wx.getBackgroundFetchData({ waitMs: 10 });
  void nothing;
  return periodic.fetchedData + login.code + token.token;
}
