// System properties and the wx calls that describe the device, the window, the app and the
// network (getSystemInfoSync, getDeviceInfo, getWindowInfo, getAppBaseInfo, getAccountInfoSync,
// getNetworkType / onNetworkStatusChange), with WeChat's result shapes.
//
// The host container gives the system properties (`system` in createRuntime's options, keys
// named with a `$`: $platform, $os_version, $brand, $model, $host_version, $mp_version, $env,
// $sdk_version, $network, $language, $screen as `WIDTHxHEIGHT`); what it leaves out is taken
// from the browser (navigator, screen) when there is one. The host's values always win.
// `properties()` is what every analytics batch carries as its `context` (plus the session and
// scene, analytics.js); it never holds a key whose value is unknown.

export const PLATFORMS = Object.freeze(['ios', 'android', 'windows', 'mac', 'devtools', 'web']);
export const NETWORK_TYPES = Object.freeze(['wifi', '2g', '3g', '4g', '5g', 'unknown', 'none']);

/** @typedef {Record<string, string | number | boolean>} SystemProperties */

/**
 * @typedef {object} BrowserLike what the fallback reads (all optional)
 * @property {{userAgent?: string, language?: string, onLine?: boolean,
 *   connection?: {type?: string, effectiveType?: string,
 *   addEventListener?: (type: string, listener: () => void) => void}}} [navigator]
 * @property {{width?: number, height?: number}} [screen]
 * @property {{innerWidth?: number, innerHeight?: number, devicePixelRatio?: number,
 *   addEventListener?: (type: string, listener: () => void) => void}} [window]
 */

/** @param {string} ua @returns {SystemProperties} */
function fromUserAgent(ua) {
  /** @type {SystemProperties} */
  const out = {};
  let m;
  if ((m = /(iPhone|iPad|iPod).*? OS (\d+(?:_\d+)*)/.exec(ua))) {
    Object.assign(out, { $platform: 'ios', $os_version: m[2].replace(/_/g, '.'), $brand: 'Apple', $model: m[1] });
  } else if ((m = /Android (\d+(?:\.\d+)*)(?:; ([^;)]+))?/.exec(ua))) {
    out.$platform = 'android';
    out.$os_version = m[1];
    const model = (m[2] ?? '').replace(/ Build\/.*$/, '').trim();
    if (model && model !== 'K') out.$model = model;
  } else if ((m = /Windows NT (\d+(?:\.\d+)*)/.exec(ua))) {
    Object.assign(out, { $platform: 'windows', $os_version: m[1] });
  } else if ((m = /Mac OS X (\d+(?:[._]\d+)*)/.exec(ua))) {
    Object.assign(out, { $platform: 'mac', $os_version: m[1].replace(/_/g, '.'), $brand: 'Apple' });
  }
  return out;
}

/**
 * The network type as WeChat names it, from the Network Information API (when the browser has
 * it) and `onLine`. @param {BrowserLike['navigator']} nav @returns {string | null}
 */
export function browserNetwork(nav) {
  if (!nav) return null;
  if (nav.onLine === false) return 'none';
  const type = nav.connection?.type;
  if (type === 'wifi' || type === 'ethernet') return 'wifi';
  if (type === 'none') return 'none';
  const effective = nav.connection?.effectiveType;
  if (type === 'cellular' && effective) return effective === 'slow-2g' ? '2g' : effective;
  return typeof nav.onLine === 'boolean' ? 'unknown' : null;
}

/** @param {BrowserLike} env @returns {SystemProperties} */
export function browserSystem(env) {
  /** @type {SystemProperties} */
  const out = {};
  const nav = env.navigator;
  if (nav?.userAgent) Object.assign(out, fromUserAgent(nav.userAgent));
  if (nav?.userAgent && out.$platform === undefined) out.$platform = 'web';
  if (nav?.language) out.$language = nav.language;
  const { width, height } = env.screen ?? {};
  if (typeof width === 'number' && typeof height === 'number' && width > 0 && height > 0) {
    out.$screen = `${Math.round(width)}x${Math.round(height)}`;
  }
  const network = browserNetwork(nav);
  if (network) out.$network = network;
  return out;
}

/** The host's properties: `$`-named keys with a string, number or boolean value. @param {unknown} system */
export function hostSystem(system) {
  /** @type {SystemProperties} */
  const out = {};
  if (!system || typeof system !== 'object') return out;
  for (const [key, value] of Object.entries(system)) {
    if (!key.startsWith('$')) continue;
    if (typeof value === 'string' || typeof value === 'boolean'
      || (typeof value === 'number' && Number.isFinite(value))) out[key] = value;
  }
  return out;
}

/** @param {unknown} screen @returns {[number, number]} */
function screenSize(screen) {
  const m = /^(\d+)\s*[x×*]\s*(\d+)$/.exec(String(screen ?? ''));
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** The system of one runtime: its properties, the network state and the info calls' results. */
export class System {
  /**
   * @param {{appid: string, system?: unknown, sdkVersion: string, browser?: BrowserLike | null}} options
   */
  constructor(options) {
    const g = /** @type {any} */ (globalThis);
    /** @type {BrowserLike | null} */
    this.browser = options.browser !== undefined ? options.browser
      : (typeof g.window === 'object' && g.window ? { navigator: g.navigator, screen: g.screen, window: g.window } : null);
    this.appid = options.appid;
    /** @type {SystemProperties} */
    this.props = { $sdk_version: options.sdkVersion, ...(this.browser ? browserSystem(this.browser) : {}),
      ...hostSystem(options.system) };
    this.hostNetwork = typeof this.props.$network === 'string' && hostSystem(options.system).$network !== undefined;
    /** @type {Set<(res: {isConnected: boolean, networkType: any}) => void>} */
    this.networkListeners = new Set();
    this.watchBrowserNetwork();
  }

  watchBrowserNetwork() {
    if (!this.browser || this.hostNetwork) return;
    const update = () => {
      const type = browserNetwork(this.browser?.navigator);
      if (type) this.setNetwork(type);
    };
    this.browser.window?.addEventListener?.('online', update);
    this.browser.window?.addEventListener?.('offline', update);
    this.browser.navigator?.connection?.addEventListener?.('change', update);
  }

  /** The analytics context: every known system property. @returns {SystemProperties} */
  properties() {
    return { ...this.props };
  }

  /** The network type now (`unknown` when nobody said). */
  get network() {
    const value = this.props.$network;
    return typeof value === 'string' && NETWORK_TYPES.includes(value) ? value : 'unknown';
  }

  /**
   * The container reports a network change (the browser's own changes come by themselves);
   * onNetworkStatusChange listeners hear of it when the type changed.
   * @param {string} type one of NETWORK_TYPES
   */
  setNetwork(type) {
    if (!NETWORK_TYPES.includes(type)) throw new TypeError(`setNetwork: unknown network type ${type}`);
    if (this.props.$network === type) return;
    this.props.$network = type;
    const res = { isConnected: type !== 'none', networkType: /** @type {any} */ (type) };
    for (const listener of [...this.networkListeners]) {
      try {
        listener({ ...res });
      } catch (error) {
        setTimeout(() => { throw error; }, 0);
      }
    }
  }

  /** @param {string} key @param {string} fallback */
  text(key, fallback = '') {
    const value = this.props[key];
    return value === undefined ? fallback : String(value);
  }

  /** WeChat's platform names have no `web`: a web container answers like the devtools. */
  get wxPlatform() {
    const p = this.text('$platform');
    return /** @type {WechatMiniprogram.DeviceInfo['platform']} */ (
      ['ios', 'android', 'windows', 'mac', 'devtools'].includes(p) ? p : 'devtools');
  }

  /** @returns {WechatMiniprogram.DeviceInfo} */
  deviceInfo() {
    const platform = this.wxPlatform;
    /** @type {Record<string, string>} */
    const names = { ios: 'iOS', android: 'Android', windows: 'Windows', mac: 'macOS' };
    const osName = names[platform] ?? '';
    const version = this.text('$os_version');
    return {
      abi: '', benchmarkLevel: -1, brand: this.text('$brand', 'unknown'), cpuType: '', deviceAbi: '',
      memorySize: '', model: this.text('$model', 'unknown'), platform,
      system: [osName, version].filter(Boolean).join(' '),
    };
  }

  /** @returns {WechatMiniprogram.WindowInfo} */
  windowInfo() {
    const [screenWidth, screenHeight] = screenSize(this.props.$screen);
    const win = this.browser?.window;
    const windowWidth = typeof win?.innerWidth === 'number' ? win.innerWidth : screenWidth;
    const windowHeight = typeof win?.innerHeight === 'number' ? win.innerHeight : screenHeight;
    const pixelRatio = typeof win?.devicePixelRatio === 'number' ? win.devicePixelRatio : 1;
    return {
      pixelRatio, screenWidth, screenHeight, screenTop: 0, statusBarHeight: 0, windowWidth, windowHeight,
      safeArea: { left: 0, top: 0, right: windowWidth, bottom: windowHeight, width: windowWidth, height: windowHeight },
    };
  }

  /** @returns {WechatMiniprogram.AppBaseInfo} */
  appBaseInfo() {
    return {
      SDKVersion: this.text('$sdk_version'), enableDebug: false, fontSizeScaleFactor: 1, fontSizeSetting: 16,
      host: { appId: '' }, language: this.text('$language', 'en'),
      version: this.text('$host_version'), PCKernelVersion: '',
    };
  }

  /** @returns {WechatMiniprogram.AccountInfo} */
  accountInfo() {
    const env = this.text('$env', 'release');
    return {
      miniProgram: {
        appId: this.appid,
        envVersion: /** @type {'develop' | 'trial' | 'release'} */ (['develop', 'trial'].includes(env) ? env : 'release'),
        version: this.text('$mp_version'),
      },
      plugin: { appId: '', version: '' },
    };
  }

  /** @returns {WechatMiniprogram.SystemInfo} */
  systemInfo() {
    const device = this.deviceInfo();
    const base = this.appBaseInfo();
    const win = this.windowInfo();
    return {
      ...win, SDKVersion: base.SDKVersion, brand: device.brand, model: device.model, platform: device.platform,
      system: device.system, language: base.language, version: base.version, host: base.host,
      enableDebug: false, fontSizeSetting: base.fontSizeSetting, benchmarkLevel: device.benchmarkLevel,
      deviceOrientation: win.windowWidth > win.windowHeight ? 'landscape' : 'portrait',
      wifiEnabled: this.network === 'wifi', bluetoothEnabled: false, locationEnabled: false,
      locationReducedAccuracy: false, albumAuthorized: false, cameraAuthorized: false,
      locationAuthorized: false, microphoneAuthorized: false, notificationAuthorized: false,
      notificationAlertAuthorized: false, notificationBadgeAuthorized: false,
      notificationSoundAuthorized: false, phoneCalendarAuthorized: false,
    };
  }
}
