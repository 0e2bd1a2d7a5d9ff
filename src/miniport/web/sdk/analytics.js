// Miniport's analytics reporting for the JavaScript runtime: `wx.reportAnalytics` /
// `wx.reportEvent` and the codeless (configured) events the evaluator emits, sent in batches to
// POST /runtime/v1/apps/{appid}/analytics/events.
//
// - Every event gets a client-made id (crypto.randomUUID), its device time `ts`, and each batch
//   its device send time `sent_at` (the server corrects the device clock with them and drops an
//   id it has already stored, so sending an event twice is harmless). A custom event also
//   names the published version it was recorded under (`v`; none under a test), which the
//   platform checks it against if the version in force when it arrives refuses it.
// - Batching: a batch goes when `batchSize` events wait, `flushIntervalMs` after the first one
//   (shorter while a test configuration is in force), and when the page is hidden or left
//   (`visibilitychange` / `pagehide`, as a keepalive request).
// - Offline queue: the waiting events are kept in localStorage (across page reloads) and sent
//   again when the device is back online (`online`), when another request to the platform
//   succeeds, when the event stream reconnects, or after a growing retry delay. Other runtimes
//   of the app (other tabs) share the stored queue: each adds its events to what is stored and
//   removes only those it sent (see `save`), so none loses another's; a runtime that starts
//   takes everything stored (a reload, or what a closed tab left), which may send an event a
//   live tab also sends: the platform stores it once.
// - The platform's answer decides a batch's fate (`outcomeOf`; the table is in docs/console.md
//   and src/miniport/runtime/vectors/report_status.json, which the Python runtime follows too):
//   answered (2xx with a JSON object) it is done; not delivered, or not allowed with this token
//   yet (network error, an answer that is not JSON, 401, 403, 408, 409, 429, 5xx) it is kept
//   and tried again, with the token in force then; too large (413) it goes again at once in
//   halves; any other 4xx refuses it for good, so it is dropped and the queue goes on.
// - Retries (`backoff`): the delay doubles from `retryMs` up to `maxRetryMs`, and each wait is
//   drawn between half and all of it (jitter, from the injectable `random`), so devices that
//   failed at the same moment (the event store down) do not all come back at the same moment.
//   After a 429 or 503 the wait is at least the answer's `Retry-After` (`retryAfterMs`: seconds,
//   or an HTTP-date), capped at `maxRetryMs`, and the delay at least twice it.
// - Context: every batch carries `context`, the runtime's system properties (system.js) with
//   the current `$session` and `$scene`; every event its own `context` with the `$session` and
//   `$scene` it happened in (the platform lets an event's keys override the batch's).
// - Built-in events (lifecycle.js): `$launch`, `$show`, `$hide`, `$pageview`, `$pageleave`, from
//   the same container calls that drive the evaluator; on unless the `builtinEvents` option is
//   false or the app's configuration says `"builtin_events": false`. The session is kept either way.
// - The analytics configuration (published, or a running test's for the tester) is fetched with
//   `fetchConfig()` and follows the event stream's `analyticsConfig` messages; the container
//   drives the codeless evaluator through the methods that mirror it (`pageLoad(t, page, data)`,
//   `click(t, page, element)`, ...), and whatever it emits is queued for reporting.
//
// No dependencies; runs in a modern browser and in Node 20 (storage, the clock, the random
// source and the window events are injectable; timers are the global ones).

import { Evaluator } from './evaluator.js';
import { Lifecycle } from './lifecycle.js';

/**
 * @typedef {{[key: string]: unknown}} JsonObject
 *
 * @typedef {object} QueuedEvent one entry of a batch, as the platform takes it
 * @property {string} id client-made, unique
 * @property {string | number} event the event's name (or numeric id)
 * @property {JsonObject} data field values
 * @property {number} ts device time of the event, ms
 * @property {string | null} page
 * @property {string | null} trigger
 * @property {string | null} action
 * @property {JsonObject} [context] `$session` / `$scene` when it happened
 * @property {number} [v] the published version in force when it was recorded (none under a
 *   test): the platform checks it against that version if the one in force refuses it
 *
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void,
 *            removeItem(key: string): void}} StorageLike
 *
 * @typedef {{addEventListener(type: string, listener: (event: any) => void): void,
 *            removeEventListener(type: string, listener: (event: any) => void): void}} TargetLike
 *
 * @typedef {object} AnalyticsOptions
 * @property {number} [batchSize] send as soon as this many events wait (default 20)
 * @property {number} [flushIntervalMs] send at most this long after an event is queued (5000)
 * @property {number} [testFlushIntervalMs] the same while a test configuration is in force (500)
 * @property {number} [maxQueue] keep at most this many waiting events, dropping the oldest (5000)
 * @property {number} [retryMs] first retry delay after a failed send, doubling (5000)
 * @property {number} [maxRetryMs] the longest retry delay, and the most a `Retry-After` is
 *   waited for (300000: 5 minutes)
 * @property {() => number} [random] the retries' jitter, a number in [0, 1) (Math.random)
 * @property {StorageLike | null} [storage] where the queue is kept (default: localStorage)
 * @property {string} [storageKey] its key (default `miniport.analytics.<appid>`; give one per
 *   signed-in user when several users share a browser)
 * @property {TargetLike | null} [target] the window (`online`, `pagehide`, `visibilitychange`,
 *   `storage`)
 * @property {{visibilityState?: string} | null} [document] for `visibilityState`
 * @property {{onLine?: boolean} | null} [navigator] for `onLine`
 * @property {() => number} [now] the device clock, ms (default Date.now)
 * @property {() => string} [makeId] event ids (default crypto.randomUUID)
 * @property {boolean} [builtinEvents] report the built-in events (default true; the app's
 *   configuration can still turn them off)
 * @property {number} [sessionTimeoutMs] a new session after this long in the background (30 min)
 *
 * @typedef {object} RuntimeLike what the reporter needs of the Runtime (wx.js)
 * @property {string} appid
 * @property {string} token
 * @property {(path: string) => string} url
 * @property {typeof fetch} fetch
 * @property {(api: string, method: string, path: string, body?: unknown) => Promise<Record<string, any>>} call
 * @property {{properties(): JsonObject}} [system] the system properties (system.js)
 *
 * @typedef {{accepted: number, duplicates: number,
 *            rejected: {index: number, id: string | null, reason: string, code?: string}[]}} BatchResult
 *
 * @typedef {{type: 'queued', events: QueuedEvent[]}
 *   | {type: 'sent', events: QueuedEvent[], result: BatchResult}
 *   | {type: 'failed', events: QueuedEvent[], error: string, offline: boolean}
 *   | {type: 'dropped', events: QueuedEvent[], error: string}} ReportNotice
 *
 * @typedef {{config: JsonObject | null, testId: string | null, version: number | null}} ConfigNotice
 *
 * @typedef {import('./evaluator.js').EmittedEvent} EmittedEvent
 * @typedef {import('./evaluator.js').Element} EvaluatorElement
 */

export const DEFAULTS = Object.freeze({
  batchSize: 20,
  flushIntervalMs: 5000,
  testFlushIntervalMs: 500,
  maxQueue: 5000,
  retryMs: 5000,
  maxRetryMs: 300_000,
});
export const MAX_BATCH = 1000; // the platform's limit per batch
/** the answers whose Retry-After is honoured */
export const RETRY_AFTER_STATUSES = Object.freeze([429, 503]);
const KEEPALIVE_BYTES = 60_000; // browsers cap keepalive bodies at 64 KiB
const MAX_BATCH_BYTES = 900_000; // the platform takes 1,000,000 bytes a request
/** sendOne's answer for a batch too large for the server: send again at once, smaller */
const SMALLER = Symbol('smaller');

/** UTF-8 bytes of a string (TextEncoder is not in every mini-program engine). @param {string} text */
function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code < 0xdc00) { bytes += 4; i += 1; } // a surrogate pair
    else bytes += 3;
  }
  return bytes;
}
const STORE_VERSION = 1;

/**
 * What becomes of a batch the platform answered `status` (`json`: the answer was a JSON
 * object). The table (docs/console.md; src/miniport/runtime/vectors/report_status.json):
 * - `sent`: the platform's verdict (stored, duplicates, refused one by one): done;
 * - `retry`: keep it and try again later, same ids: not delivered (an answer that is not JSON,
 *   408, 5xx: a proxy's, or the event store unreachable), asked again (409 "send it again",
 *   429), or not allowed with this token (401: missing, expired or revoked; 403: minted for
 *   another app): the events are fine and a new token (`runtime.token`) sends them;
 * - `split`: 413, over the server's request size: smaller batches fit (one event alone that
 *   is too large is dropped);
 * - `drop`: any other 4xx (404 no such app, 422 a batch that cannot be read): sending the same
 *   again cannot change it, so it must not hold up what waits behind it.
 * @param {number} status @param {boolean} json
 * @returns {'sent' | 'retry' | 'split' | 'drop'}
 */
export function outcomeOf(status, json) {
  if (status >= 200 && status < 300) return json ? 'sent' : 'retry';
  if (status >= 500 || [401, 403, 408, 409, 429].includes(status)) return 'retry';
  if (status === 413) return 'split';
  return 'drop';
}

/**
 * The next retry after a failure, in ms: `delay` doubles from `first` (`previous`: the last
 * one, 0 for none) up to `longest`; `wait` is drawn between half and all of it with `random()`
 * in [0, 1) ("equal jitter"), so devices that failed at the same moment come back spread out.
 * A `retryAfter` (an answer's Retry-After), capped at `longest` so a hostile or broken proxy
 * cannot park a device for a day, is the least wait and makes the delay at least twice it;
 * the doubling goes on from there. The Python runtime's `backoff` is the same function
 * (src/miniport/runtime/vectors/report_status.json).
 * @param {number} previous @param {number} first @param {number} longest
 * @param {number | null} retryAfter @param {() => number} random
 * @returns {{delay: number, wait: number}}
 */
export function backoff(previous, first, longest, retryAfter, random) {
  const floor = Math.min(Math.max(retryAfter ?? 0, 0), longest);
  const delay = Math.min(longest, Math.max(previous ? previous * 2 : first, 2 * floor));
  const share = Math.min(Math.max(Number(random()) || 0, 0), 1);
  return { delay, wait: Math.max(floor, delay / 2 + (delay / 2) * share) };
}

/**
 * How long a Retry-After header asks the client to wait, in ms (null: no header, or one that
 * cannot be read). Delta-seconds (`"5"`), or an HTTP-date counted from the answer's own `Date`
 * when it has a readable one (the server's clock: a phone's may be off by hours), else from
 * `now` (ms); a date gone by is 0. Not capped here (`backoff` caps it).
 * @param {string | null | undefined} value @param {string | null | undefined} date
 * @param {number} now
 * @returns {number | null}
 */
export function retryAfterMs(value, date, now) {
  if (typeof value !== 'string') return null;
  const text = value.trim();
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000; // Infinity for absurd digits: capped
  // an HTTP-date names its day or month; Date.parse alone takes "1.5" or "7" as dates
  const at = /[a-z]{3}/i.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) return null;
  const sent = typeof date === 'string' && /[a-z]{3}/i.test(date) ? Date.parse(date) : NaN;
  return Math.max(0, at - (Number.isNaN(sent) ? now : sent));
}

/** @param {unknown} value @returns {value is JsonObject} */
const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

/** A random event id: crypto.randomUUID, else 128 random bits from getRandomValues. */
export function newEventId() {
  const c = /** @type {Crypto | undefined} */ (globalThis.crypto);
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {unknown} entry @returns {entry is QueuedEvent} */
const isQueued = (entry) => isObject(entry) && typeof entry.id === 'string' && entry.id !== ''
  && (typeof entry.event === 'string' || typeof entry.event === 'number');

/** @param {(...args: any[]) => void} callback @param {unknown[]} args */
const safely = (callback, ...args) => {
  try {
    callback(...args);
  } catch (error) {
    setTimeout(() => {
      throw error;
    }, 0);
  }
};

/**
 * Analytics for one runtime: the configuration, the codeless evaluator, and the reporting queue.
 * Created by the Runtime (`runtime.analytics`).
 */
export class Analytics {
  /** @param {RuntimeLike} runtime @param {AnalyticsOptions} [options] */
  constructor(runtime, options = {}) {
    this.runtime = runtime;
    this.batchSize = Math.max(1, Math.min(MAX_BATCH, options.batchSize ?? DEFAULTS.batchSize));
    this.flushIntervalMs = Math.max(0, options.flushIntervalMs ?? DEFAULTS.flushIntervalMs);
    this.testFlushIntervalMs = Math.max(0, options.testFlushIntervalMs ?? DEFAULTS.testFlushIntervalMs);
    this.maxQueue = Math.max(1, options.maxQueue ?? DEFAULTS.maxQueue);
    this.retryMs = Math.max(1, options.retryMs ?? DEFAULTS.retryMs);
    this.maxRetryMs = Math.max(this.retryMs, options.maxRetryMs ?? DEFAULTS.maxRetryMs);
    this.random = options.random ?? Math.random;
    const g = /** @type {any} */ (globalThis);
    /** @type {StorageLike | null} */
    this.storage = options.storage !== undefined ? options.storage : safeLocalStorage();
    this.storageKey = options.storageKey ?? `miniport.analytics.${runtime.appid}`;
    /** @type {TargetLike | null} */
    this.target = options.target !== undefined ? options.target
      : (typeof g.window === 'object' && g.window && typeof g.window.addEventListener === 'function'
        ? g.window : null);
    /** @type {{visibilityState?: string} | null} */
    this.document = options.document !== undefined ? options.document : (g.document ?? null);
    /** @type {{onLine?: boolean} | null} */
    this.navigator = options.navigator !== undefined ? options.navigator : (g.navigator ?? null);
    this.now = options.now ?? (() => Date.now());
    this.makeId = options.makeId ?? newEventId;
    this.builtinOption = options.builtinEvents !== false;
    /** sessions and built-in events (lifecycle.js) */
    this.lifecycle = new Lifecycle({ makeId: this.makeId, timeoutMs: options.sessionTimeoutMs });

    /** @type {JsonObject | null} */
    this.config = null;
    /** @type {string | null} */
    this.testId = null;
    this.evaluator = new Evaluator({ events: [] });
    /** the page shown last (for reports from code) @type {string | null} */
    this.currentPage = null;
    /** @type {QueuedEvent[]} */
    this.queue = [];
    /** true after a send failed for want of a network, until one succeeds */
    this.offline = false;
    this.closed = false;
    this.configFetched = false;
    /** @type {Set<(notice: ReportNotice) => void>} */
    this.reportListeners = new Set();
    /** @type {Set<(notice: ConfigNotice) => void>} */
    this.configListeners = new Set();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    /** the last retry's backoff delay, before jitter (0: the last send went, or none failed) */
    this.retryDelay = 0;
    /** how long the scheduled retry waits, jitter and Retry-After included (0: none) */
    this.retryWait = 0;
    /** until when (ms) the scheduled retry keeps to the platform's Retry-After (0: none) */
    this.retryAfterUntil = 0;
    this.timerWait = 0;
    /** the largest batch (UTF-8 bytes of its events) to send; lowered by a 413 */
    this.maxBatchBytes = MAX_BATCH_BYTES;
    /** @type {Promise<BatchResult | null> | null} */
    this.inflight = null;
    /** the stored queue as this runtime last wrote or read it (to skip parsing it again) */
    this.stored = { raw: /** @type {string | null} */ (null), events: /** @type {QueuedEvent[]} */ ([]) };
    /** a write failed (storage full): the next one adds the whole queue */
    this.unsaved = false;

    this.onOnline = () => {
      this.offline = false;
      this.retryDelay = 0;
      if (this.queue.length) void this.flush();
    };
    this.onHide = () => {
      if (this.queue.length) void this.flush({ keepalive: true });
    };
    this.onVisibility = () => {
      if (this.document?.visibilityState === 'hidden') this.onHide();
    };
    /** another tab wrote the stored queue (or cleared the storage: key null) */
    this.onStorage = (/** @type {{key?: string | null}} */ event) => {
      if (event.key === this.storageKey || event.key === null) this.repair();
    };
    this.target?.addEventListener('online', this.onOnline);
    this.target?.addEventListener('pagehide', this.onHide);
    this.target?.addEventListener('visibilitychange', this.onVisibility);
    this.target?.addEventListener('storage', this.onStorage);

    this.queue = this.load();
    if (this.queue.length) this.schedule();
  }

  // -- configuration ---------------------------------------------------------------------

  /** The published version number of the configuration in force (0 under test), or null. */
  get version() {
    const version = this.config?.version;
    return typeof version === 'number' ? version : null;
  }

  /**
   * Use a configuration (from `fetchConfig`, the event stream, or the container).
   * @param {JsonObject | null} config @param {string | null} [testId]
   */
  setConfig(config, testId = undefined) {
    this.config = isObject(config) ? config : null;
    const fromConfig = this.config && typeof this.config.test_id === 'string' ? this.config.test_id : null;
    this.testId = testId === undefined ? fromConfig : testId;
    this.evaluator.setConfig(this.config ?? { events: [] });
    /** @type {ConfigNotice} */
    const notice = { config: this.config, testId: this.testId, version: this.version };
    for (const listener of [...this.configListeners]) safely(listener, notice);
    if (this.queue.length) this.schedule(); // a test shortens the wait
  }

  /**
   * Fetch the configuration in force for this user (a test's for a tester) and use it.
   * @returns {Promise<JsonObject>}
   */
  async fetchConfig() {
    const config = await this.runtime.call('getAnalyticsConfig', 'GET', '/analytics/config');
    this.configFetched = true;
    this.setConfig(config, typeof config.test_id === 'string' ? config.test_id : null);
    return config;
  }

  /**
   * Called with `{config, testId, version}` whenever the configuration changes; returns a
   * function that removes the listener.
   * @param {(notice: ConfigNotice) => void} listener
   */
  onConfig(listener) {
    this.configListeners.add(listener);
    return () => this.configListeners.delete(listener);
  }

  /**
   * Called for every queued, sent, failed or dropped batch; returns a function that removes
   * the listener.
   * @param {(notice: ReportNotice) => void} listener
   */
  onReport(listener) {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  /** @param {ReportNotice} notice */
  notify(notice) {
    for (const listener of [...this.reportListeners]) safely(listener, notice);
  }

  // -- the codeless evaluator, driven by the container -------------------------------------
  // Same names and arguments as Evaluator (time `t` in ms first); each returns what it emitted
  // (already queued for reporting).

  /** Built-in events are reported: the option and the app's configuration allow them. */
  get builtinEnabled() {
    return this.builtinOption && this.config?.builtin_events !== false;
  }

  /**
   * A cold (the first) or warm launch, with where it opened.
   * @param {number} t @param {import('./lifecycle.js').LaunchInfo} [info]
   * @returns {EmittedEvent[]}
   */
  launch(t, info = {}) {
    this.builtin(this.lifecycle.launch(t, info));
    return this.emit(this.evaluator.launch(t));
  }

  /** @param {number} t @returns {EmittedEvent[]} */
  background(t) {
    const emitted = this.emit(this.evaluator.background(t));
    this.builtin(this.lifecycle.hide(t));
    return emitted;
  }

  /** @param {number} t @returns {EmittedEvent[]} */
  foreground(t) {
    this.builtin(this.lifecycle.show(t));
    return this.emit(this.evaluator.foreground(t));
  }

  /** @param {number} t @param {string | null} [page] @returns {EmittedEvent[]} */
  share(t, page = null) {
    return this.emit(this.evaluator.share(t, page));
  }

  /**
   * @param {number} t @param {string} page @param {JsonObject | null} [data]
   * @param {string | JsonObject} [query] the page's query (for `$pageview`)
   * @returns {EmittedEvent[]}
   */
  pageLoad(t, page, data = null, query = undefined) {
    this.lifecycle.pageLoad(page, query);
    this.currentPage = page;
    return this.emit(this.evaluator.pageLoad(t, page, data));
  }

  /**
   * @param {number} t @param {string} page @param {string | JsonObject} [query] (for `$pageview`)
   * @returns {EmittedEvent[]}
   */
  pageShow(t, page, query = undefined) {
    this.currentPage = page;
    this.builtin(this.lifecycle.pageShow(t, page, query));
    return this.emit(this.evaluator.pageShow(t, page));
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pageHide(t, page) {
    const emitted = this.emit(this.evaluator.pageHide(t, page));
    this.builtin(this.lifecycle.pageLeave(t, page));
    return emitted;
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pageUnload(t, page) {
    const emitted = this.emit(this.evaluator.pageUnload(t, page));
    this.builtin(this.lifecycle.pageLeave(t, page));
    return emitted;
  }

  /** @param {number} t @param {string} page @param {EvaluatorElement | null} element @returns {EmittedEvent[]} */
  click(t, page, element) {
    return this.emit(this.evaluator.click(t, page, element));
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  switchTab(t, page) {
    return this.emit(this.evaluator.switchTab(t, page));
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pullDownRefresh(t, page) {
    return this.emit(this.evaluator.pullDownRefresh(t, page));
  }

  /** @param {number} t @param {string} page @param {JsonObject} data @returns {EmittedEvent[]} */
  setData(t, page, data) {
    return this.evaluator.setData(t, page, data);
  }

  /** @param {number} t @param {JsonObject} data @returns {EmittedEvent[]} */
  setAppData(t, data) {
    return this.evaluator.setAppData(t, data);
  }

  /**
   * Queue built-in events (unless they are off; the session is kept either way).
   * @param {import('./lifecycle.js').BuiltinEvent[]} events
   */
  builtin(events) {
    if (!events.length || !this.builtinEnabled) return;
    this.enqueue(events.map((ev) => ({
      id: this.makeId(),
      event: ev.event,
      data: ev.data,
      ts: ev.t,
      page: ev.page,
      trigger: null,
      action: null,
      context: this.lifecycle.context(ev.t),
    })));
  }

  /** Queue what the evaluator emitted. @param {EmittedEvent[]} emitted */
  emit(emitted) {
    if (emitted.length) {
      const recorded = this.recordedUnder();
      this.enqueue(emitted.map((ev) => ({
        id: this.makeId(),
        event: typeof ev.event === 'string' ? ev.event : /** @type {number} */ (ev.event_id),
        data: { ...ev.data },
        ts: ev.t,
        page: ev.page || null,
        trigger: ev.trigger,
        action: ev.action,
        context: this.lifecycle.context(ev.t),
        ...recorded,
      })));
    }
    return emitted;
  }

  /**
   * `{v}`: the published version this event is recorded under, which the platform checks it
   * against when the version in force by then refuses it (a field dropped meanwhile: queued
   * offline, or sent before the publish reached this device); `{}` under a test or with none.
   * @returns {{v?: number}}
   */
  recordedUnder() {
    const version = this.version;
    return this.testId === null && version !== null && version > 0 ? { v: version } : {};
  }

  // -- reports from code -------------------------------------------------------------------

  /**
   * Queue one report from code (`wx.reportAnalytics` / `wx.reportEvent`).
   * @param {string | number} event @param {JsonObject} [data]
   * @returns {QueuedEvent | null} the event as queued (as it will be sent), or null when it
   *   was not queued: JSON cannot carry it (a BigInt, a cycle; a `dropped` notice says why),
   *   or the runtime is closed
   */
  report(event, data = {}) {
    const ts = this.now();
    const entry = {
      id: this.makeId(),
      event,
      data: { ...data },
      ts,
      page: this.currentPage,
      trigger: null,
      action: null,
      context: this.lifecycle.context(ts),
      ...this.recordedUnder(),
    };
    const [queued] = this.enqueue([entry]);
    // a copy: changed by the app, it would differ from what was saved for after a restart
    return queued ? /** @type {QueuedEvent} */ (JSON.parse(JSON.stringify(queued))) : null;
  }

  // -- the queue ---------------------------------------------------------------------------

  /**
   * Queue events as they will be sent: each string (keys too) well-formed, a lone UTF-16
   * surrogate (half an emoji, cut by `slice`) replaced by U+FFFD, which the platform's strict
   * JSON reader would refuse with the whole batch; an event JSON cannot write (a BigInt, a
   * cycle) is dropped here with a notice, which otherwise threw at every later send and save
   * and held up the queue for good.
   * @param {QueuedEvent[]} events
   * @returns {QueuedEvent[]} the events queued, as queued
   */
  enqueue(events) {
    if (this.closed) return [];
    /** @type {QueuedEvent[]} */ const kept = [];
    for (const ev of events) {
      try {
        kept.push(/** @type {QueuedEvent} */ (JSON.parse(JSON.stringify(wellFormed(ev)))));
      } catch (err) {
        const error = `event cannot be sent: ${err instanceof Error ? err.message : String(err)}`;
        this.notify({ type: 'dropped', events: [ev], error });
      }
    }
    events = kept;
    if (!events.length) return [];
    this.queue.push(...events);
    if (this.queue.length > this.maxQueue) this.queue.splice(0, this.queue.length - this.maxQueue);
    this.save({ add: events });
    this.notify({ type: 'queued', events });
    this.schedule();
    return events;
  }

  /** @returns {QueuedEvent[]} */
  load() {
    return this.readStored().slice(-this.maxQueue);
  }

  /** The stored queue (every runtime of the app writes it), [] when none or unreadable. */
  readStored() {
    if (!this.storage) return [];
    try {
      const raw = this.storage.getItem(this.storageKey);
      if (!raw) return [];
      if (raw === this.stored.raw) return this.stored.events; // as we left it: no parsing
      const stored = JSON.parse(raw);
      const events = Array.isArray(stored?.events) ? stored.events.filter(isQueued) : [];
      this.stored = { raw, events };
      return events;
    } catch {
      return [];
    }
  }

  /**
   * Change the stored queue, which other runtimes of the app (other tabs) write too: take
   * `sent` out of what is stored now and add `add` (default: whatever of this runtime's queue
   * is missing from it). Never the queue alone over the key: a tab that did lost the other
   * tabs' unsent events. At most `maxQueue` events, the oldest (first stored) dropped; nothing
   * is written when nothing changes.
   * @param {{add?: QueuedEvent[], sent?: QueuedEvent[]}} [change]
   */
  save({ add, sent = [] } = {}) {
    if (!this.storage || this.closed) return;
    const before = this.readStored();
    const done = new Set(sent.map((ev) => ev.id));
    /** @type {Map<string, QueuedEvent>} */
    const merged = new Map();
    for (const ev of before) if (!done.has(ev.id)) merged.set(ev.id, ev);
    const removed = merged.size < before.length;
    // the whole queue after a write that failed (storage full), as for a repair
    for (const ev of add && !this.unsaved ? add : this.queue) {
      if (!merged.has(ev.id) && !done.has(ev.id)) merged.set(ev.id, ev);
    }
    if (!removed && merged.size === before.length) return;
    const events = [...merged.values()].slice(-this.maxQueue);
    try {
      if (events.length) {
        const raw = JSON.stringify({ v: STORE_VERSION, events });
        this.storage.setItem(this.storageKey, raw);
        this.stored = { raw, events };
      } else {
        this.storage.removeItem(this.storageKey);
        this.stored = { raw: null, events: [] };
      }
      this.unsaved = false;
    } catch {
      this.unsaved = true; // storage full or refused: the queue stays in memory, goes in later
    }
  }

  /**
   * Another tab wrote the stored queue: if that write missed some of this runtime's events
   * (browsers pass writes between tabs asynchronously, so it may not have seen ours), put them
   * back, unless the store is full (they were dropped as the oldest, and putting them back
   * would only push out another tab's, which would put those back...).
   */
  repair() {
    if (this.readStored().length < this.maxQueue) this.save();
  }

  /** Arrange the next send: at once for a full batch, else after the flush interval. */
  schedule() {
    if (this.closed || !this.queue.length || this.retryTimer) return;
    if (this.queue.length >= this.batchSize) {
      this.clearTimer();
      queueMicrotask(() => void this.flush());
      return;
    }
    const wait = this.testId ? Math.min(this.flushIntervalMs, this.testFlushIntervalMs)
      : this.flushIntervalMs;
    if (this.timer && this.timerWait <= wait) return;
    this.clearTimer();
    this.timerWait = wait;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, wait);
  }

  clearTimer() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * Retry after a failure, after a doubling delay with jitter (`backoff`; the `online` event
   * comes sooner). A retry already scheduled stays as it is.
   * @param {number | null} [retryAfter] the answer's Retry-After (a 429 or 503), ms: the least wait
   */
  scheduleRetry(retryAfter = null) {
    if (this.closed || this.retryTimer) return;
    const { delay, wait } = backoff(this.retryDelay, this.retryMs, this.maxRetryMs, retryAfter,
      this.random);
    this.retryDelay = delay;
    this.retryWait = wait;
    // the server's own Retry-After holds until it is over, a reconnect or not (see networkOk)
    this.retryAfterUntil = retryAfter === null ? 0 : this.now() + wait;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryWait = 0;
      this.retryAfterUntil = 0;
      void this.flush();
    }, wait);
  }

  /**
   * The platform answered another request (or the event stream reconnected, `force`): if a
   * send had failed, send what waits now; not while a Retry-After the platform gave (429,
   * 503) runs: a node that restarted saw every device it served reconnect at once and send
   * at once, the burst its Retry-After was there to spread.
   * @param {boolean} [force]
   */
  networkOk(force = false) {
    if (!this.offline && !(force && this.retryTimer)) return;
    if (this.retryTimer && this.retryAfterUntil > this.now()) return;
    this.offline = false;
    this.retryDelay = 0;
    this.retryWait = 0;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.queue.length) void this.flush();
  }

  /**
   * Send the waiting events now (one batch at a time until the queue is empty or a send
   * fails). Resolves with the last batch's result, or null when nothing was sent.
   * @param {{keepalive?: boolean}} [options]
   * @returns {Promise<BatchResult | null>}
   */
  flush(options = {}) {
    // after the send in flight, unless it failed and set a retry (a keepalive flush still goes)
    if (this.inflight) {
      return this.inflight.then(() => (
        this.queue.length && (options.keepalive || !this.retryTimer) ? this.flush(options) : null));
    }
    if (this.closed || !this.queue.length) return Promise.resolve(null);
    this.clearTimer();
    this.inflight = this.sendAll(Boolean(options.keepalive)).finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  /** @param {boolean} keepalive @returns {Promise<BatchResult | null>} */
  async sendAll(keepalive) {
    /** @type {BatchResult | null} */
    let last = null;
    while (this.queue.length && !this.closed) {
      const outcome = await this.sendOne(keepalive);
      if (outcome === SMALLER) continue;
      if (outcome === null) return last;
      last = outcome;
    }
    return last;
  }

  /**
   * One batch. Returns its result, null when it could not be sent (kept for later), or
   * SMALLER when it was too large (sent again at once, in smaller batches).
   * @param {boolean} keepalive @returns {Promise<BatchResult | null | typeof SMALLER>}
   */
  async sendOne(keepalive) {
    if (this.navigator && this.navigator.onLine === false) {
      this.offline = true;
      this.notify({ type: 'failed', events: [...this.queue], error: 'offline', offline: true });
      return null; // the `online` event sends them
    }
    let batch = this.queue.slice(0, MAX_BATCH);
    // bytes, not characters: 1000 events of Chinese text were 1.3 MB, refused whole, dropped
    const limit = Math.min(keepalive ? KEEPALIVE_BYTES : MAX_BATCH_BYTES, this.maxBatchBytes);
    let bytes = utf8Length(JSON.stringify(batch));
    while (batch.length > 1 && bytes > limit) {
      batch = batch.slice(0, Math.ceil(batch.length / 2));
      bytes = utf8Length(JSON.stringify(batch));
    }
    const now = this.now();
    const context = { ...(this.runtime.system?.properties() ?? {}), ...this.lifecycle.context(now) };
    const body = JSON.stringify({ sent_at: now, context, events: batch });
    /** @type {Response} */
    let response;
    try {
      response = await this.runtime.fetch(this.runtime.url('/analytics/events'), {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${this.runtime.token}`,
          Accept: 'application/json',
          'Content-Type': 'application/json',
        },
        body,
        keepalive: keepalive || undefined,
      });
    } catch (error) {
      this.offline = true;
      const message = error instanceof Error ? error.message : String(error);
      this.notify({ type: 'failed', events: batch, error: `network error: ${message}`, offline: true });
      this.scheduleRetry();
      return null;
    }
    /** @type {any} */
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    const outcome = outcomeOf(response.status, isObject(data));
    if (outcome === 'sent') {
      this.offline = false;
      this.retryDelay = 0;
      this.remove(batch);
      /** @type {BatchResult} */
      const result = {
        accepted: Number(data.accepted ?? 0),
        duplicates: Number(data.duplicates ?? 0),
        rejected: Array.isArray(data.rejected) ? data.rejected : [],
      };
      this.notify({ type: 'sent', events: batch, result });
      return result;
    }
    const reason = isObject(data) && typeof data.message === 'string' ? data.message
      : `HTTP ${response.status}`;
    if (outcome === 'retry') {
      this.notify({ type: 'failed', events: batch, error: reason, offline: false });
      this.scheduleRetry(RETRY_AFTER_STATUSES.includes(response.status)
        ? retryAfterMs(response.headers?.get('Retry-After'), response.headers?.get('Date'), this.now())
        : null);
      return null;
    }
    if (outcome === 'split' && batch.length > 1) {
      // over the server's request size: from now on at most half of this one
      this.maxBatchBytes = Math.max(1, Math.floor(bytes / 2));
      this.notify({ type: 'failed', events: batch, error: reason, offline: false });
      return SMALLER;
    }
    // refused as a whole (an unknown app, a batch that cannot be read, one event too large):
    // sending it again cannot help, and it must not hold up what waits behind it
    this.remove(batch);
    this.notify({ type: 'dropped', events: batch, error: reason });
    return { accepted: 0, duplicates: 0, rejected: batch.map((ev, index) => ({ index, id: ev.id, reason })) };
  }

  /** @param {QueuedEvent[]} batch */
  remove(batch) {
    const ids = new Set(batch.map((ev) => ev.id));
    this.queue = this.queue.filter((ev) => !ids.has(ev.id));
    this.save({ add: [], sent: batch });
  }

  /** Stop: no more timers, listeners or storage writes (the stored queue stays for later). */
  close() {
    this.clearTimer();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryWait = 0;
    this.target?.removeEventListener('online', this.onOnline);
    this.target?.removeEventListener('pagehide', this.onHide);
    this.target?.removeEventListener('visibilitychange', this.onVisibility);
    this.target?.removeEventListener('storage', this.onStorage);
    this.closed = true;
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `value` with every string (and object key) well-formed UTF-16: a lone surrogate becomes
 * U+FFFD, as `String.prototype.toWellFormed` does (not in every runtime yet).
 * @param {unknown} value @returns {unknown}
 */
export function wellFormed(value) {
  // what JSON.stringify would write for it first: a Date is its ISO string, not {}
  if (value !== null && typeof value === 'object' && typeof /** @type {any} */ (value).toJSON === 'function') {
    value = /** @type {any} */ (value).toJSON();
  }
  if (typeof value === 'string') return value.replace(LONE_SURROGATE, '\uFFFD');
  if (Array.isArray(value)) return value.map(wellFormed);
  if (value !== null && typeof value === 'object') {
    /** @type {Record<string, unknown>} */ const out = {};
    for (const [k, v] of Object.entries(value)) out[/** @type {string} */ (wellFormed(k))] = wellFormed(v);
    return out;
  }
  return value;
}

/** localStorage when the environment has a usable one. @returns {StorageLike | null} */
function safeLocalStorage() {
  try {
    const storage = /** @type {any} */ (globalThis).localStorage;
    return storage && typeof storage.getItem === 'function' ? storage : null;
  } catch {
    return null; // access denied (sandboxed frames)
  }
}
