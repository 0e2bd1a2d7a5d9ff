// The wx calls mini-program code makes first (wx-base.js, system.js, storage.js): WeChat's result
// shapes from the host's system properties or the browser's, canIUse, the network, and storage
// with its limits and errMsg strings, in callback and promise form.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import vm from 'node:vm';

import { createRuntime, MAX_ITEM_BYTES, MemoryStorage } from '../../src/miniport/web/sdk/miniport-runtime.js';

const fetch = async () => { throw new TypeError('no network in these tests'); };
const SYSTEM = { $platform: 'android', $os_version: '14', $brand: 'Xiaomi', $model: '23127PN0CC', $mp_version: '1.2.0',
  $env: 'trial', $network: '4g', $language: 'zh_CN', $screen: '1080x2400', $host_version: '8.0.50', $sdk_version: '3.4.1' };

function runtimeWith({ system = SYSTEM, browser = null, backing = new MemoryStorage(), appid = 'mp1', prefix } = {}) {
  return createRuntime({ appid, token: 'rt', fetch, system, browser, storage: { backing, prefix },
    analytics: { storage: null, target: null, document: null, navigator: null } });
}

/** Call with callbacks; resolves with {kind, value, completed, returned}. */
function withCallbacks(call) {
  return new Promise((resolve) => {
    const got = {};
    got.returned = call({
      success: (value) => { got.kind = 'success'; got.value = value; },
      fail: (value) => { got.kind = 'fail'; got.value = value; },
      complete: (value) => { got.completed = value; resolve(got); },
    });
  });
}

describe('device, window, app and account info', () => {
  test('from the host\'s system properties', () => {
    const { wx } = runtimeWith();
    assert.deepEqual(wx.getDeviceInfo(), {
      abi: '', benchmarkLevel: -1, brand: 'Xiaomi', cpuType: '', deviceAbi: '', memorySize: '',
      model: '23127PN0CC', platform: 'android', system: 'Android 14',
    });
    assert.deepEqual(wx.getWindowInfo(), {
      pixelRatio: 1, screenWidth: 1080, screenHeight: 2400, screenTop: 0, statusBarHeight: 0,
      windowWidth: 1080, windowHeight: 2400,
      safeArea: { left: 0, top: 0, right: 1080, bottom: 2400, width: 1080, height: 2400 },
    });
    assert.deepEqual(wx.getAppBaseInfo(), {
      SDKVersion: '3.4.1', enableDebug: false, fontSizeScaleFactor: 1, fontSizeSetting: 16, host: { appId: '' },
      language: 'zh_CN', version: '8.0.50', PCKernelVersion: '',
    });
    assert.deepEqual(wx.getAccountInfoSync(), {
      miniProgram: { appId: 'mp1', envVersion: 'trial', version: '1.2.0' }, plugin: { appId: '', version: '' },
    });
    const info = wx.getSystemInfoSync();
    assert.equal(info.platform, 'android');
    assert.equal(info.system, 'Android 14');
    assert.equal(info.SDKVersion, '3.4.1');
    assert.equal(info.version, '8.0.50');
    assert.equal(info.deviceOrientation, 'portrait');
    assert.equal(info.wifiEnabled, false);
    assert.equal(info.screenWidth, 1080);
  });

  test('getSystemInfo: callbacks and promise, with errMsg', async () => {
    const { wx } = runtimeWith();
    const res = await wx.getSystemInfo();
    assert.equal(res.errMsg, 'getSystemInfo:ok');
    assert.equal(res.model, '23127PN0CC');
    const got = await withCallbacks((cb) => wx.getSystemInfo(cb));
    assert.equal(got.returned, undefined);
    assert.equal(got.kind, 'success');
    assert.equal(got.completed.errMsg, 'getSystemInfo:ok');
  });

  test('in a browser, what the host leaves out comes from navigator and screen; the host wins', () => {
    const browser = {
      navigator: { userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15',
        language: 'en-GB', onLine: true, connection: { type: 'wifi' } },
      screen: { width: 393, height: 852 },
      window: { innerWidth: 393, innerHeight: 760, devicePixelRatio: 3 },
    };
    const rt = runtimeWith({ system: { $mp_version: '2.0.0' }, browser });
    assert.deepEqual(rt.system.properties(), {
      $sdk_version: '0.1.0', $platform: 'ios', $os_version: '17.2.1', $brand: 'Apple', $model: 'iPhone',
      $language: 'en-GB', $screen: '393x852', $network: 'wifi', $mp_version: '2.0.0',
    });
    const win = rt.wx.getWindowInfo();
    assert.deepEqual([win.windowWidth, win.windowHeight, win.pixelRatio], [393, 760, 3]);
    assert.equal(rt.wx.getDeviceInfo().system, 'iOS 17.2.1');
    const host = runtimeWith({ system: { $platform: 'android', $language: 'zh_CN' }, browser });
    assert.equal(host.system.properties().$platform, 'android');
    assert.equal(host.system.properties().$language, 'zh_CN');
  });

  test('an unknown browser is `web` (the wx calls answer `devtools`, WeChat has no `web`)', () => {
    const rt = runtimeWith({ system: {}, browser: { navigator: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64)', onLine: true } } });
    assert.equal(rt.system.properties().$platform, 'web');
    assert.equal(rt.system.properties().$network, 'unknown');
    assert.equal(rt.wx.getDeviceInfo().platform, 'devtools');
  });

  test('host values that are not plain values, or keys without `$`, are left out', () => {
    const rt = runtimeWith({ system: { $platform: 'ios', $model: { x: 1 }, $scene: Number.NaN, model: 'x' } });
    assert.deepEqual(rt.system.properties(), { $sdk_version: '0.1.0', $platform: 'ios' });
  });
});

describe('canIUse', () => {
  test('calls, their results and their options', () => {
    const { wx } = runtimeWith();
    assert.equal(wx.canIUse('getAppBaseInfo'), true);
    assert.equal(wx.canIUse('getStorageSync'), true);
    assert.equal(wx.canIUse('getBackgroundFetchData'), true);
    assert.equal(wx.canIUse('getSystemInfoSync.return.screenWidth'), true);
    assert.equal(wx.canIUse('getSystemInfoSync.return.nonsense'), false);
    assert.equal(wx.canIUse('getNetworkType.success.networkType'), true);
    assert.equal(wx.canIUse('setStorage.object.data'), true);
    assert.equal(wx.canIUse('setStorage.object.nonsense'), false);
    assert.equal(wx.canIUse('getUpdateManager'), false);
    assert.equal(wx.canIUse('button.open-type.contact'), false);
    assert.equal(wx.canIUse(''), false);
    assert.equal(wx.canIUse(/** @type {any} */ (42)), false);
  });
});

describe('network', () => {
  test('getNetworkType, and onNetworkStatusChange when the container reports a change', async () => {
    const rt = runtimeWith();
    const res = await rt.wx.getNetworkType();
    assert.deepEqual(res, { networkType: '4g', signalStrength: 0, hasSystemProxy: false, weakNet: false,
      errMsg: 'getNetworkType:ok' });
    const heard = [];
    const listener = (r) => heard.push(r);
    rt.wx.onNetworkStatusChange(listener);
    rt.system.setNetwork('wifi');
    rt.system.setNetwork('wifi'); // no change, nothing heard
    rt.system.setNetwork('none');
    assert.deepEqual(heard, [{ isConnected: true, networkType: 'wifi' }, { isConnected: false, networkType: 'none' }]);
    assert.equal(rt.system.properties().$network, 'none', 'the analytics context follows');
    rt.wx.offNetworkStatusChange(listener);
    rt.system.setNetwork('5g');
    assert.equal(heard.length, 2);
    assert.throws(() => rt.system.setNetwork('6g'), /unknown network type/);
    assert.throws(() => rt.wx.onNetworkStatusChange(/** @type {any} */ (null)), /listener should be a Function/);
  });

  test('in a browser, online / offline change it by themselves', () => {
    const handlers = {};
    const navigator = { userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)', onLine: true };
    const browser = { navigator, window: { addEventListener: (type, fn) => { handlers[type] = fn; } } };
    const rt = runtimeWith({ system: {}, browser });
    const heard = [];
    rt.wx.onNetworkStatusChange((r) => heard.push(r.networkType));
    navigator.onLine = false;
    handlers.offline();
    navigator.onLine = true;
    handlers.online();
    assert.deepEqual(heard, ['none', 'unknown']);
    assert.equal(rt.system.properties().$platform, 'windows');
  });
});

describe('storage', () => {
  test('values keep their type; a missing key: "" from the Sync form, a fail from the async one', async () => {
    const { wx } = runtimeWith();
    const when = new Date('2026-11-29T12:00:00Z');
    wx.setStorageSync('obj', { a: [1, 'x'], b: null });
    wx.setStorageSync('num', 42);
    wx.setStorageSync('when', when);
    wx.setStorageSync('nothing', undefined);
    assert.deepEqual(wx.getStorageSync('obj'), { a: [1, 'x'], b: null });
    assert.equal(wx.getStorageSync('num'), 42);
    assert.deepEqual(wx.getStorageSync('when'), when);
    assert.equal(wx.getStorageSync('nothing'), undefined);
    assert.equal(wx.getStorageSync('missing'), '');
    assert.deepEqual(await wx.getStorage({ key: 'num' }), { data: 42, errMsg: 'getStorage:ok' });
    await assert.rejects(wx.getStorage({ key: 'missing' }), (err) => err.errMsg === 'getStorage:fail data not found');
    const got = await withCallbacks((cb) => wx.getStorage({ key: 'missing', ...cb }));
    assert.equal(got.returned, undefined);
    assert.equal(got.kind, 'fail');
    assert.equal(got.value.errMsg, 'getStorage:fail data not found');
  });

  test('set / remove / clear, async with callbacks, and getStorageInfo in KB', async () => {
    const { wx } = runtimeWith();
    const set = await withCallbacks((cb) => wx.setStorage({ key: 'k', data: 'v'.repeat(3000), ...cb }));
    assert.deepEqual([set.kind, set.value], ['success', { errMsg: 'setStorage:ok' }]);
    await wx.setStorage({ key: 'other', data: 1 });
    const info = await wx.getStorageInfo();
    assert.deepEqual(info.keys.sort(), ['k', 'other']);
    assert.equal(info.currentSize, 3, '3000 characters and a little more: 3 KB');
    assert.equal(info.limitSize, 10240);
    assert.equal(info.errMsg, 'getStorageInfo:ok');
    assert.deepEqual(await wx.removeStorage({ key: 'k' }), { errMsg: 'removeStorage:ok' });
    assert.deepEqual(wx.getStorageInfoSync(), { keys: ['other'], currentSize: 1, limitSize: 10240 });
    wx.removeStorageSync('other');
    assert.deepEqual(wx.getStorageInfoSync().keys, []);
    wx.setStorageSync('a', 1);
    assert.deepEqual(await wx.clearStorage(), { errMsg: 'clearStorage:ok' });
    assert.deepEqual(wx.getStorageInfoSync(), { keys: [], currentSize: 0, limitSize: 10240 });
  });

  test('kept per app: another app\'s keys and anything else in the backing stay', () => {
    const backing = new MemoryStorage();
    backing.setItem('miniport.analytics.mp1', '{"v":1,"events":[]}');
    const one = runtimeWith({ backing, appid: 'mp1' }).wx;
    const two = runtimeWith({ backing, appid: 'mp2' }).wx;
    one.setStorageSync('k', 'one');
    two.setStorageSync('k', 'two');
    assert.equal(one.getStorageSync('k'), 'one');
    assert.equal(two.getStorageSync('k'), 'two');
    one.clearStorageSync();
    assert.equal(one.getStorageSync('k'), '');
    assert.equal(two.getStorageSync('k'), 'two');
    assert.equal(backing.getItem('miniport.analytics.mp1'), '{"v":1,"events":[]}');
    assert.deepEqual(two.getStorageInfoSync().keys, ['k']);
  });

  test('1 MB per key: refused with WeChat\'s errMsg, the old value kept', async () => {
    const { wx } = runtimeWith();
    wx.setStorageSync('big', 'old');
    const tooBig = 'x'.repeat(MAX_ITEM_BYTES);
    assert.throws(() => wx.setStorageSync('big', tooBig), (err) => err.errMsg === 'setStorageSync:fail exceed storage item max length');
    await assert.rejects(wx.setStorage({ key: 'big', data: tooBig }),
      (err) => err.errMsg === 'setStorage:fail exceed storage item max length');
    assert.equal(wx.getStorageSync('big'), 'old');
    wx.setStorageSync('big', 'x'.repeat(MAX_ITEM_BYTES - 100)); // just under: fine
  });

  test('10 MB per app: the eleventh megabyte is refused; replacing a key counts only once', () => {
    const { wx } = runtimeWith();
    const chunk = 'y'.repeat(MAX_ITEM_BYTES - 100);
    for (let i = 0; i < 10; i += 1) wx.setStorageSync(`k${i}`, chunk);
    assert.throws(() => wx.setStorageSync('k10', 'z'.repeat(2000)),
      (err) => err.errMsg === 'setStorageSync:fail exceed storage max size 10MB');
    wx.setStorageSync('k3', chunk); // same size again: fits
    wx.removeStorageSync('k0');
    wx.setStorageSync('k10', 'z'.repeat(2000));
    assert.equal(wx.getStorageInfoSync().keys.length, 10);
  });

  test('bad parameters: a key that is not a string, data JSON cannot hold', async () => {
    const { wx } = runtimeWith();
    await assert.rejects(wx.getStorage(/** @type {any} */ ({ key: 5 })),
      (err) => err.errMsg === 'getStorage:fail parameter error: parameter.key should be String instead of number');
    assert.throws(() => wx.setStorageSync(/** @type {any} */ (null), 1), /setStorageSync:fail parameter error/);
    assert.throws(() => wx.setStorageSync('f', () => 1), /setStorageSync:fail cannot store a function/);
    assert.throws(() => wx.setStorageSync('big', 10n), /setStorageSync:fail/);
  });
});

describe('a sample app.js', () => {
  test('runs on the runtime\'s wx alone', async () => {
    const rt = runtimeWith();
    rt.wx.setStorageSync('launches', 2);
    let app = null;
    const sandbox = vm.createContext({ wx: rt.wx, App: (definition) => { app = definition; } });
    vm.runInContext(readFileSync(new URL('../fixtures/sample-app/app.js', import.meta.url), 'utf8'), sandbox);
    assert.ok(app, 'App() was called');
    app.onLaunch({ path: 'pages/index/index', query: {}, scene: 1001 });
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual({ ...app.globalData }, {
      sdk: '3.4.1', language: 'zh_CN', canShare: true, platform: 'android', model: '23127PN0CC',
      windowWidth: 1080, windowHeight: 2400, env: 'trial', version: '1.2.0', launches: 3, scene: 1001,
      network: '4g', profileError: 'getStorage:fail data not found',
    });
    rt.system.setNetwork('none');
    assert.equal(app.globalData.network, 'none');
  });
});
