// Miniport's JavaScript runtime for web-based mini-program containers: a `wx`-compatible object
// whose background-data calls behave like WeChat's, so mini-program code written for WeChat runs
// unchanged. Served by the platform at /sdk/miniport-runtime.js (this file: /sdk/wx.js).
//
// Every wx call takes WeChat's option object. With a `success`, `fail` or `complete` callback it
// calls them (asynchronously) and returns undefined; with none it returns a Promise that
// resolves with the success result or rejects with the fail result. Results carry WeChat's
// `errMsg` strings: `<api>:ok` on success, `<api>:fail <reason>` on failure.
//
// The option and result types below mirror the `miniprogram-api-typings` declarations; a type
// check (js/types/, run by `npm test`) keeps them in step.
//
// Analytics: `wx.reportAnalytics` / `wx.reportEvent` (WeChat's: they return nothing) and the
// codeless evaluator driven by the container through `runtime.analytics` (analytics.js), with
// batching and an offline queue kept in localStorage.
//
// No dependencies; runs in a modern browser and in Node 20 (fetch and EventSource injectable).

import { Analytics, backoff } from './analytics.js';
import { WxStorage } from './storage.js';
import { System } from './system.js';
import { baseWx } from './wx-base.js';

/**
 * @typedef {{errMsg: string}} GeneralCallbackResult
 * @typedef {{errMsg: string, errno: number}} LoginFailCallbackErr
 * @typedef {(res: GeneralCallbackResult) => void} FailCallback
 * @typedef {(res: GeneralCallbackResult) => void} CompleteCallback
 *
 * @typedef {{success?: (result: any) => void, fail?: (err: any) => void,
 *            complete?: CompleteCallback}} AsyncMethodOption
 *
 * @typedef {object} SetBackgroundFetchTokenOption
 * @property {string} token the custom login state, at most 1024 characters
 * @property {(res: GeneralCallbackResult) => void} [success]
 * @property {FailCallback} [fail]
 * @property {CompleteCallback} [complete]
 *
 * @typedef {object} GetBackgroundFetchTokenSuccessCallbackResult
 * @property {string} token
 * @property {string} errMsg
 *
 * @typedef {object} GetBackgroundFetchTokenOption
 * @property {(result: GetBackgroundFetchTokenSuccessCallbackResult) => void} [success]
 * @property {FailCallback} [fail]
 * @property {CompleteCallback} [complete]
 *
 * @typedef {object} GetBackgroundFetchDataSuccessCallbackResult
 * @property {string} fetchedData the cached body, as the developer's server sent it
 * @property {string} path the page the app was opened at ('' for periodic data)
 * @property {string} query the query string the app was opened with ('' for periodic data)
 * @property {number} scene the scene number the app was opened from (0 for periodic data)
 * @property {number} timeStamp when the data arrived (ms)
 * @property {string} errMsg
 *
 * @typedef {object} GetBackgroundFetchDataOption
 * @property {string} fetchType 'periodic' or 'pre'
 * @property {number} [waitMs] Miniport: wait up to this long (ms, at most 10000) for an
 *   in-flight pre-fetch instead of answering with older data at once
 * @property {(result: GetBackgroundFetchDataSuccessCallbackResult) => void} [success]
 * @property {FailCallback} [fail]
 * @property {CompleteCallback} [complete]
 *
 * @typedef {object} OnBackgroundFetchDataListenerResult
 * @property {string} fetchType
 * @property {string} fetchedData
 * @property {string} path
 * @property {string} query
 * @property {number} scene
 * @property {number} timeStamp
 *
 * @typedef {(result: OnBackgroundFetchDataListenerResult) => void} OnBackgroundFetchDataCallback
 *
 * @typedef {object} LoginSuccessCallbackResult
 * @property {string} code a one-time login code for /sns/jscode2session (valid five minutes)
 * @property {string} errMsg
 *
 * @typedef {object} LoginOption
 * @property {number} [timeout] ms
 * @property {(result: LoginSuccessCallbackResult) => void} [success]
 * @property {(err: LoginFailCallbackErr) => void} [fail]
 * @property {CompleteCallback} [complete]
 */

/**
 * WeChat's rule for the return value: void when any callback is given, else a Promise of the
 * success result.
 * @template P
 * @template {AsyncMethodOption} T
 * @typedef {P extends {success: any} ? void : P extends {fail: any} ? void
 *   : P extends {complete: any} ? void
 *   : Promise<Parameters<Exclude<T['success'], undefined>>[0]>} PromisifySuccessResult
 */

/**
 * @typedef {object} LaunchOptions
 * @property {string} [path]
 * @property {string | Record<string, string | number>} [query]
 * @property {number} [scene]
 *
 * @typedef {{type: string, [key: string]: unknown}} RuntimeMessage
 *
 * @typedef {object} EventSourceLike
 * @property {(type: string, listener: (event: {data: string}) => void) => void} addEventListener
 * @property {() => void} close
 * @property {((event: unknown) => void) | null} [onerror]
 * @property {((event: unknown) => void) | null} [onopen]
 * @property {number} [readyState] 2: closed for good
 *
 * @typedef {new (url: string) => EventSourceLike} EventSourceConstructor
 *
 * @typedef {object} RuntimeConfig
 * @property {string} appid the mini-program's appid
 * @property {string} token a runtime token for the signed-in host user (from the host API)
 * @property {string} [baseUrl] the Miniport server ('' for the page's own origin)
 * @property {typeof fetch} [fetch] defaults to the global fetch
 * @property {EventSourceConstructor} [EventSource] defaults to the global EventSource
 * @property {import('./analytics.js').AnalyticsOptions} [analytics] batching, storage and
 *   clock of the analytics reports, built-in events on or off (analytics.js)
 * @property {Record<string, string | number | boolean>} [system] the host's system properties
 *   (`$platform`, `$model`, ...: system.js); a browser fills in what it can tell
 * @property {import('./system.js').BrowserLike | null} [browser] where the browser fallback
 *   looks (default: the page's navigator, screen and window; null: none)
 * @property {{backing?: import('./storage.js').KeyedStorage | null, prefix?: string}} [storage]
 *   the wx storage's backing (default localStorage, else memory) and its per-app key prefix
 * @property {number} [reconnectMs] first wait before reopening an event stream the browser
 *   gave up on, doubling (with jitter) to a minute (1000)
 * @property {() => number} [random] the jitter's random source, in [0, 1) (Math.random)
 */

export const VERSION = '0.1.0';
const MAX_RECONNECT_MS = 60_000;
export const EVENT_TYPES = Object.freeze([
  'backgroundFetchData', 'devtoolsRefresh', 'analyticsConfig', 'connected', 'unauthorized',
]);

/** @param {unknown} value */
const typeName = (value) => {
  if (value === null) return 'Null';
  if (value === undefined) return 'Undefined';
  if (Array.isArray(value)) return 'Array';
  const name = typeof value;
  return name.charAt(0).toUpperCase() + name.slice(1);
};

// errno values of fail results, from WeChat's shared errno table where it has one
export const ERRNO = Object.freeze({
  UNKNOWN: 1, // the platform refused the call (its reason is in errMsg)
  PARAMETER: 1001, // a parameter of the wrong type
  TIMEOUT: 5, // the call's own timeout (login's `timeout`)
  NETWORK: 600000, // the platform could not be reached
});

/** A failure with WeChat's errMsg (and errno). */
export class WxError extends Error {
  /** @param {string} errMsg @param {number} [errno] @param {number} [status] HTTP status */
  constructor(errMsg, errno = ERRNO.UNKNOWN, status = undefined) {
    super(errMsg);
    this.name = 'WxError';
    this.errMsg = errMsg;
    this.errno = errno;
    this.status = status;
  }
}

/** @param {string} api @param {string} reason @param {number} [errno] */
const fail = (api, reason, errno = ERRNO.UNKNOWN) =>
  new WxError(reason.startsWith(`${api}:fail`) ? reason : `${api}:fail ${reason}`, errno);

/** Throw a user callback's error outside of our promise chain (as WeChat reports it). */
/** @param {unknown} error */
const rethrowLater = (error) => {
  setTimeout(() => {
    throw error;
  }, 0);
};

/**
 * Run `work` and deliver its result WeChat's way: callbacks, or a promise when none is given.
 * @template R
 * @param {string} api
 * @param {AsyncMethodOption | undefined} option
 * @param {() => Promise<R>} work
 * @returns {Promise<R> | undefined}
 */
export function invoke(api, option, work) {
  const opt = option ?? {};
  const wanted = ['success', 'fail', 'complete'].some(
    (key) => typeof (/** @type {Record<string, unknown>} */ (opt))[key] === 'function');
  const result = Promise.resolve()
    .then(work)
    .catch((/** @type {unknown} */ error) => {
      const wx = error instanceof WxError ? error
        : fail(api, error instanceof Error ? error.message : String(error));
      return Promise.reject({ errMsg: wx.errMsg, errno: wx.errno });
    });
  if (!wanted) return result;
  /** @param {((res: any) => void) | undefined} callback @param {unknown} value */
  const call = (callback, value) => {
    if (typeof callback !== 'function') return;
    try {
      callback(value);
    } catch (error) {
      rethrowLater(error);
    }
  };
  result.then(
    (value) => {
      call(opt.success, value);
      call(opt.complete, value);
    },
    (error) => {
      call(opt.fail, error);
      call(opt.complete, error);
    },
  );
  return undefined;
}

/**
 * Check one parameter's type the way WeChat words it.
 * @param {string} api @param {string} name @param {unknown} value @param {string} expected
 */
function expect(api, name, value, expected) {
  const actual = typeName(value);
  if (actual !== expected) {
    throw fail(api, `parameter error: parameter.${name} should be ${expected} instead of ${actual};`,
      ERRNO.PARAMETER);
  }
}

/** The runtime for one app and one signed-in user: the `wx` object plus container hooks. */
export class Runtime {
  /** @param {RuntimeConfig} config */
  constructor(config) {
    if (!config || typeof config.appid !== 'string' || !config.appid) {
      throw new TypeError('createRuntime: appid is required');
    }
    if (typeof config.token !== 'string' || !config.token) {
      throw new TypeError('createRuntime: token (a runtime token) is required');
    }
    this.appid = config.appid;
    this.token = config.token;
    this.baseUrl = (config.baseUrl ?? '').replace(/\/+$/, '');
    const fetchImpl = config.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('createRuntime: no fetch available');
    /** @type {typeof fetch} */
    this.fetch = (input, init) => fetchImpl(input, init);
    /** @type {EventSourceConstructor | undefined} */
    this.EventSource = config.EventSource
      ?? /** @type {EventSourceConstructor | undefined} */ (/** @type {any} */ (globalThis).EventSource);
    /** @type {EventSourceLike | null} */
    this.source = null;
    this.wanted = false; // connect() asked for a stream, close() did not end it since
    this.reconnectMs = Math.max(1, config.reconnectMs ?? 1000);
    this.random = config.random ?? Math.random;
    this.reconnectDelay = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.reconnectTimer = null;
    /** @type {Map<string, Set<(message: RuntimeMessage) => void>>} */
    this.listeners = new Map();
    /** @type {Set<OnBackgroundFetchDataCallback>} */
    this.dataListeners = new Set();
    this.connectedOnce = false;
    /** The device: system properties, network, the info calls' results (system.js). */
    this.system = new System({ appid: this.appid, system: config.system, sdkVersion: VERSION,
      browser: config.browser });
    /** The app's wx storage (storage.js). */
    this.storage = new WxStorage({ appid: this.appid, backing: config.storage?.backing,
      prefix: config.storage?.prefix });
    /** Analytics: configuration, codeless evaluator, reporting queue (analytics.js). */
    this.analytics = new Analytics(this, config.analytics ?? {});
    this.wx = this.makeWx();
  }

  /** @param {string} path */
  url(path) {
    return `${this.baseUrl}/runtime/v1/apps/${encodeURIComponent(this.appid)}${path}`;
  }

  /**
   * One runtime API call; resolves with the JSON body, rejects with a WxError.
   * @param {string} api @param {string} method @param {string} path @param {unknown} [body]
   * @param {AbortSignal} [signal]
   * @returns {Promise<Record<string, any>>}
   */
  async call(api, method, path, body, signal) {
    /** @type {Response} */
    let response;
    try {
      response = await this.fetch(this.url(path), {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          Accept: 'application/json',
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw fail(api, 'timeout', ERRNO.TIMEOUT);
      throw fail(api, `network error: ${error instanceof Error ? error.message : String(error)}`,
        ERRNO.NETWORK);
    }
    /** @type {Record<string, any>} */
    let data;
    try {
      data = await response.json();
    } catch {
      throw new WxError(`${api}:fail bad response (HTTP ${response.status})`, ERRNO.UNKNOWN,
        response.status);
    }
    if (!response.ok) {
      const reason = typeof data.errMsg === 'string' ? data.errMsg
        : String(data.message ?? `HTTP ${response.status}`);
      throw new WxError(reason.startsWith(`${api}:fail`) ? reason : `${api}:fail ${reason}`,
        ERRNO.UNKNOWN, response.status);
    }
    this.analytics?.networkOk();
    return data;
  }

  /**
   * Report a cold start (the container calls this as the mini-program launches); the platform
   * starts the pre-fetch at once when the app has an enabled pre-fetch URL.
   * @param {LaunchOptions} [options]
   * @returns {Promise<{errMsg: string, prefetch: boolean}>}
   */
  async launch(options = {}) {
    const data = await this.call('launch', 'POST', '/launch', {
      path: options.path ?? '',
      query: options.query ?? '',
      scene: options.scene ?? 1001,
    }).catch((error) => Promise.reject({ errMsg: error.errMsg ?? String(error),
      errno: error.errno ?? ERRNO.UNKNOWN }));
    return { errMsg: 'launch:ok', prefetch: Boolean(data.prefetch) };
  }

  /** Open the event stream (idempotent). Returns false when no EventSource is available. */
  connect() {
    if (this.source) return true;
    if (typeof this.EventSource !== 'function') return false;
    this.wanted = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const url = `${this.baseUrl}/runtime/v1/events?access_token=${encodeURIComponent(this.token)}`
      + `&appid=${encodeURIComponent(this.appid)}`; // this app's messages only
    const source = new this.EventSource(url);
    this.source = source;
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => this.dispatch(type, event.data));
    }
    // a browser's EventSource gives up for good when a reconnect is answered with anything
    // but a stream: a 401 (the token revoked or expired while the device was away), or a
    // proxy's 502/503 while a node restarts. The runtime opens a new one after a while.
    source.onerror = () => {
      if (source.readyState !== 2 || this.source !== source) return;
      this.source = null;
      this.reconnectLater();
    };
    return true;
  }

  /** Close the event stream (no reconnect until the next connect()). */
  close() {
    this.wanted = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.source?.close();
    this.source = null;
  }

  /**
   * Reopen the stream the browser gave up on, after a wait that doubles from `reconnectMs` to
   * a minute with jitter (every device of a restarted node does not come back at once).
   */
  reconnectLater() {
    if (!this.wanted || this.reconnectTimer) return;
    const { delay, wait } = backoff(this.reconnectDelay, this.reconnectMs, MAX_RECONNECT_MS, null,
      this.random);
    this.reconnectDelay = delay;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.reopen().catch(() => this.reconnectLater());
    }, wait);
  }

  /**
   * Before reopening, ask whether the token is still taken (the browser does not say why it
   * gave up): a refused one is told to `on('unauthorized')` listeners, as the platform tells
   * an open stream, and not tried again until the host sets a new one and calls connect().
   */
  async reopen() {
    const answer = await this.fetch(this.url('/background-fetch/token'), {
      headers: { Authorization: `Bearer ${this.token}`, Accept: 'application/json' },
    }).catch(() => null);
    if (!this.wanted || this.source || this.reconnectTimer) return; // closed or reopened meanwhile
    if (answer && (answer.status === 401 || answer.status === 403)) {
      const body = await answer.json().catch(() => ({}));
      this.dispatch('unauthorized', JSON.stringify({
        type: 'unauthorized',
        error: typeof body?.error === 'string' ? body.error : 'unauthorized',
        message: typeof body?.message === 'string' ? body.message : `HTTP ${answer.status}`,
      }));
      return;
    }
    this.connect(); // a proxy's error, or the platform away: the stream's own errors tell
  }

  /**
   * A raw message from the event stream.
   * @param {string} type @param {string} raw
   */
  dispatch(type, raw) {
    /** @type {RuntimeMessage} */
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.appid !== undefined && message.appid !== this.appid) return;
    if (type === 'analyticsConfig') {
      const config = message.config;
      this.analytics.setConfig(config && typeof config === 'object' ? /** @type {any} */ (config) : null,
        typeof message.test_id === 'string' ? message.test_id : null);
    } else if (type === 'connected') {
      this.reconnectDelay = 0; // reached: the next drop starts the waits over
      // a reconnect: a test may have started or stopped meanwhile, and the platform is reachable
      if (this.connectedOnce && this.analytics.configFetched) this.analytics.fetchConfig().catch(() => undefined);
      this.connectedOnce = true;
      this.analytics.networkOk(true);
    }
    if (type === 'backgroundFetchData') {
      /** @type {OnBackgroundFetchDataListenerResult} */
      const result = {
        fetchType: String(message.fetchType ?? ''),
        fetchedData: String(message.fetchedData ?? ''),
        path: String(message.path ?? ''),
        query: String(message.query ?? ''),
        scene: Number(message.scene ?? 0),
        timeStamp: Number(message.timeStamp ?? Date.now()),
      };
      for (const listener of [...this.dataListeners]) {
        try {
          listener(result);
        } catch (error) {
          rethrowLater(error);
        }
      }
    }
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        listener(message);
      } catch (error) {
        rethrowLater(error);
      }
    }
    // the platform ended the stream: its token is revoked or expired, and a reconnect with it
    // is refused; set runtime.token to a new one and call connect()
    if (type === 'unauthorized') this.close();
  }

  /**
   * Listen to any event-stream message type (`devtoolsRefresh`, `connected`, ...); returns a
   * function that removes the listener. The container and the devtools use this.
   * `unauthorized`: the platform refused the runtime token (revoked, expired) and ended the
   * stream; set `runtime.token` to a new one and call `connect()`.
   * @param {string} type @param {(message: RuntimeMessage) => void} listener
   */
  on(type, listener) {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener);
    this.connect();
    return () => set.delete(listener);
  }

  makeWx() {
    const runtime = this;
    /** @param {string} api @param {unknown} event @param {unknown} data */
    const report = (api, event, data) => {
      const numeric = api === 'reportEvent' && typeof event === 'number' && Number.isInteger(event)
        && event > 0; // reportEvent also takes the numeric id the platform gave the event
      if (!numeric && (typeof event !== 'string' || event === '')) {
        console.error(`${api}:fail parameter error: event should be a non-empty String instead of ${typeName(event)}`);
        return;
      }
      if (data !== undefined && data !== null && (typeof data !== 'object' || Array.isArray(data))) {
        console.error(`${api}:fail parameter error: data should be Object instead of ${typeName(data)}`);
        return;
      }
      runtime.analytics.report(/** @type {string | number} */ (event),
        /** @type {Record<string, unknown>} */ (data ?? {}));
    };
    return {
      ...baseWx({ system: this.system, storage: this.storage, wxMethods: () => /** @type {any} */ (this).wx }, invoke),

      /**
       * @template {SetBackgroundFetchTokenOption} T
       * @param {T} option
       * @returns {PromisifySuccessResult<T, SetBackgroundFetchTokenOption>}
       */
      setBackgroundFetchToken(option) {
        const api = 'setBackgroundFetchToken';
        return /** @type {any} */ (invoke(api, option, async () => {
          expect(api, 'token', option?.token, 'String');
          // characters, as the platform counts them (and Python): `length` counts UTF-16
          // units, so 600 emoji (1,200 units) were refused here and taken everywhere else
          if ([...option.token].length > 1024) {
            throw fail(api, 'token must be at most 1024 characters');
          }
          await runtime.call(api, 'POST', '/background-fetch/token', { token: option.token });
          return { errMsg: `${api}:ok` };
        }));
      },

      /**
       * @template {GetBackgroundFetchTokenOption} T
       * @param {T} [option]
       * @returns {PromisifySuccessResult<T, GetBackgroundFetchTokenOption>}
       */
      getBackgroundFetchToken(option) {
        const api = 'getBackgroundFetchToken';
        return /** @type {any} */ (invoke(api, option, async () => {
          const data = await runtime.call(api, 'GET', '/background-fetch/token');
          return { token: String(data.token), errMsg: `${api}:ok` };
        }));
      },

      /**
       * @template {GetBackgroundFetchDataOption} T
       * @param {T} option
       * @returns {PromisifySuccessResult<T, GetBackgroundFetchDataOption>}
       */
      getBackgroundFetchData(option) {
        const api = 'getBackgroundFetchData';
        return /** @type {any} */ (invoke(api, option, async () => {
          expect(api, 'fetchType', option?.fetchType, 'String');
          const params = new URLSearchParams({ fetchType: option.fetchType });
          if (option.waitMs !== undefined) {
            expect(api, 'waitMs', option.waitMs, 'Number');
            params.set('waitMs', String(Math.max(0, Math.min(10000, Math.floor(option.waitMs)))));
          }
          const data = await runtime.call(api, 'GET', `/background-fetch/data?${params}`);
          return {
            fetchedData: String(data.fetchedData ?? ''),
            timeStamp: Number(data.timeStamp ?? 0),
            path: String(data.path ?? ''),
            query: String(data.query ?? ''),
            scene: Number(data.scene ?? 0),
            errMsg: `${api}:ok`,
          };
        }));
      },

      /**
       * Called with each new background data (periodic or pre) while the app runs.
       * @param {OnBackgroundFetchDataCallback} listener
       * @returns {void}
       */
      onBackgroundFetchData(listener) {
        if (typeof listener !== 'function') {
          throw new TypeError('onBackgroundFetchData: listener should be a Function');
        }
        runtime.dataListeners.add(listener);
        runtime.connect();
      },

      /**
       * Miniport addition (WeChat has no off): stop calling `listener`, or every listener.
       * @param {OnBackgroundFetchDataCallback} [listener]
       * @returns {void}
       */
      offBackgroundFetchData(listener) {
        if (listener) runtime.dataListeners.delete(listener);
        else runtime.dataListeners.clear();
      },

      /**
       * WeChat's custom analytics report (the event defined in the console, from code). Returns
       * nothing; the report is queued and sent in a batch (kept offline until it can be sent).
       * @param {string} eventName the event's English name
       * @param {Record<string, any>} data field values
       * @returns {void}
       */
      reportAnalytics(eventName, data) {
        report('reportAnalytics', eventName, data);
      },

      /**
       * WeChat's event report: like reportAnalytics, by the event's id (its English name, or
       * the numeric id the platform gave it); `data` is optional.
       * @param {string} eventId
       * @param {Record<string, any>} [data]
       * @returns {void}
       */
      reportEvent(eventId, data) {
        report('reportEvent', eventId, data);
      },

      /**
       * @template {LoginOption} T
       * @param {T} [option]
       * @returns {PromisifySuccessResult<T, LoginOption>}
       */
      login(option) {
        const api = 'login';
        return /** @type {any} */ (invoke(api, option, async () => {
          const timeout = option?.timeout;
          const controller = typeof timeout === 'number' && timeout > 0 ? new AbortController() : null;
          const timer = controller ? setTimeout(() => controller.abort(), timeout) : null;
          try {
            const data = await runtime.call(api, 'POST', '/login', {}, controller?.signal);
            return { code: String(data.code), errMsg: `${api}:ok` };
          } finally {
            if (timer) clearTimeout(timer);
          }
        }));
      },
    };
  }
}

/**
 * The runtime for one app and one signed-in user.
 * @param {RuntimeConfig} config
 */
export function createRuntime(config) {
  return new Runtime(config);
}
