// The wx calls real mini-program code makes before anything else, with WeChat's names, result
// shapes and errMsg strings: canIUse, getSystemInfoSync / getSystemInfo, getDeviceInfo,
// getWindowInfo, getAppBaseInfo, getAccountInfoSync, getNetworkType / onNetworkStatusChange /
// offNetworkStatusChange, and the storage calls with their Sync forms. The device facts come
// from the runtime's System (system.js), the storage from its WxStorage (storage.js). The
// async forms follow WeChat's callback / promise rule (`invoke`, wx.js).

/**
 * @template P
 * @template {{success?: any, fail?: any, complete?: any}} T
 * @typedef {import('./wx.js').PromisifySuccessResult<P, T>} PromisifySuccessResult
 */

/**
 * @typedef {object} BaseRuntime what these calls need of the Runtime
 * @property {import('./system.js').System} system
 * @property {import('./storage.js').WxStorage} storage
 * @property {() => Record<string, unknown>} wxMethods the whole wx object (for canIUse)
 */

/**
 * @param {BaseRuntime} runtime
 * @param {typeof import('./wx.js').invoke} invoke
 */
export function baseWx(runtime, invoke) {
  const { system, storage } = runtime;
  const networkResult = () => ({ networkType: /** @type {any} */ (system.network), signalStrength: 0,
    hasSystemProxy: false, weakNet: false });
  // what canIUse knows of each call's result (`api.return.key`, `api.success.key`)
  const results = {
    getSystemInfoSync: () => system.systemInfo(),
    getSystemInfo: () => system.systemInfo(),
    getDeviceInfo: () => system.deviceInfo(),
    getWindowInfo: () => system.windowInfo(),
    getAppBaseInfo: () => system.appBaseInfo(),
    getAccountInfoSync: () => system.accountInfo(),
    getNetworkType: () => networkResult(),
    getStorage: () => ({ data: null }),
    getStorageInfo: () => storage.info(),
    getStorageInfoSync: () => storage.info(),
  };
  const objects = {
    getStorage: ['key', 'encrypt'], setStorage: ['key', 'data', 'encrypt'], removeStorage: ['key'],
  };

  /**
   * WeChat's `${API}.${method}.${param}` check: a call the runtime has, a key of what it
   * returns (`return` / `success`), or an option it takes (`object`).
   * @param {string} schema
   * @returns {boolean}
   */
  function canIUse(schema) {
    if (typeof schema !== 'string' || schema === '') return false;
    const [api, part, key, ...rest] = schema.split('.');
    const methods = runtime.wxMethods();
    if (typeof methods[api] !== 'function') return false;
    if (part === undefined) return true;
    if (key === undefined || rest.length) return false;
    if (part === 'return' || part === 'success') {
      const make = /** @type {Record<string, () => object>} */ (results)[api];
      return Boolean(make) && Object.prototype.hasOwnProperty.call(make(), key);
    }
    if (part === 'object') {
      const keys = /** @type {Record<string, string[]>} */ (objects)[api] ?? [];
      return [...keys, 'success', 'fail', 'complete'].includes(key);
    }
    return false;
  }

  return {
    canIUse,
    /** @returns {WechatMiniprogram.SystemInfo} */
    getSystemInfoSync() {
      return system.systemInfo();
    },
    /**
     * @template {WechatMiniprogram.GetSystemInfoOption} T
     * @param {T} [option]
     * @returns {PromisifySuccessResult<T, WechatMiniprogram.GetSystemInfoOption>}
     */
    getSystemInfo(option) {
      return /** @type {any} */ (invoke('getSystemInfo', option,
        async () => ({ ...system.systemInfo(), errMsg: 'getSystemInfo:ok' })));
    },
    /** @returns {WechatMiniprogram.DeviceInfo} */
    getDeviceInfo() {
      return system.deviceInfo();
    },
    /** @returns {WechatMiniprogram.WindowInfo} */
    getWindowInfo() {
      return system.windowInfo();
    },
    /** @returns {WechatMiniprogram.AppBaseInfo} */
    getAppBaseInfo() {
      return system.appBaseInfo();
    },
    /** @returns {WechatMiniprogram.AccountInfo} */
    getAccountInfoSync() {
      return system.accountInfo();
    },
    /**
     * @template {WechatMiniprogram.GetNetworkTypeOption} T
     * @param {T} [option]
     * @returns {PromisifySuccessResult<T, WechatMiniprogram.GetNetworkTypeOption>}
     */
    getNetworkType(option) {
      return /** @type {any} */ (invoke('getNetworkType', option,
        async () => ({ ...networkResult(), errMsg: 'getNetworkType:ok' })));
    },
    /**
     * @param {WechatMiniprogram.OnNetworkStatusChangeCallback} listener
     * @returns {void}
     */
    onNetworkStatusChange(listener) {
      if (typeof listener !== 'function') {
        throw new TypeError('onNetworkStatusChange: listener should be a Function');
      }
      system.networkListeners.add(/** @type {any} */ (listener));
    },
    /**
     * @param {WechatMiniprogram.OffNetworkStatusChangeCallback} [listener]
     * @returns {void}
     */
    offNetworkStatusChange(listener) {
      if (listener) system.networkListeners.delete(/** @type {any} */ (listener));
      else system.networkListeners.clear();
    },
    ...storageWx(storage, invoke),
  };
}

/**
 * @param {import('./storage.js').WxStorage} storage
 * @param {typeof import('./wx.js').invoke} invoke
 */
function storageWx(storage, invoke) {
  return {
    /**
     * @template [T=any]
     * @template {WechatMiniprogram.SetStorageOption<T>} [U=WechatMiniprogram.SetStorageOption<T>]
     * @param {U} option
     * @returns {PromisifySuccessResult<U, WechatMiniprogram.SetStorageOption<T>>}
     */
    setStorage(option) {
      return /** @type {any} */ (invoke('setStorage', option, async () => {
        storage.set('setStorage', option?.key, option?.data);
        return { errMsg: 'setStorage:ok' };
      }));
    },
    /**
     * @template [T=any]
     * @param {string} key
     * @param {T} data
     * @returns {void}
     */
    setStorageSync(key, data) {
      storage.set('setStorageSync', key, data);
    },
    /**
     * @template [T=any]
     * @template {WechatMiniprogram.GetStorageOption<T>} [U=WechatMiniprogram.GetStorageOption<T>]
     * @param {U} option
     * @returns {PromisifySuccessResult<U, WechatMiniprogram.GetStorageOption<T>>}
     */
    getStorage(option) {
      return /** @type {any} */ (invoke('getStorage', option, async () => {
        const { found, data } = storage.get('getStorage', option?.key);
        if (!found) throw new Error('getStorage:fail data not found');
        return { data, errMsg: 'getStorage:ok' };
      }));
    },
    /**
     * WeChat answers '' for a key that is not there.
     * @template [T=any]
     * @param {string} key
     * @returns {T}
     */
    getStorageSync(key) {
      const { found, data } = storage.get('getStorageSync', key);
      return /** @type {T} */ (found ? data : '');
    },
    /**
     * @template {WechatMiniprogram.RemoveStorageOption} T
     * @param {T} option
     * @returns {PromisifySuccessResult<T, WechatMiniprogram.RemoveStorageOption>}
     */
    removeStorage(option) {
      return /** @type {any} */ (invoke('removeStorage', option, async () => {
        storage.remove('removeStorage', option?.key);
        return { errMsg: 'removeStorage:ok' };
      }));
    },
    /**
     * @param {string} key
     * @returns {void}
     */
    removeStorageSync(key) {
      storage.remove('removeStorageSync', key);
    },
    /**
     * @template {WechatMiniprogram.ClearStorageOption} T
     * @param {T} [option]
     * @returns {PromisifySuccessResult<T, WechatMiniprogram.ClearStorageOption>}
     */
    clearStorage(option) {
      return /** @type {any} */ (invoke('clearStorage', option, async () => {
        storage.clear();
        return { errMsg: 'clearStorage:ok' };
      }));
    },
    /** @returns {void} */
    clearStorageSync() {
      storage.clear();
    },
    /**
     * @template {WechatMiniprogram.GetStorageInfoOption} T
     * @param {T} [option]
     * @returns {PromisifySuccessResult<T, WechatMiniprogram.GetStorageInfoOption>}
     */
    getStorageInfo(option) {
      return /** @type {any} */ (invoke('getStorageInfo', option,
        async () => ({ ...storage.info(), errMsg: 'getStorageInfo:ok' })));
    },
    /** @returns {WechatMiniprogram.GetStorageInfoSyncOption} */
    getStorageInfoSync() {
      return storage.info();
    },
  };
}
