// Sessions and built-in events of the JavaScript runtime (pure: no I/O, time passed in).
//
// The container's lifecycle calls (launch, show, hide, page show / leave) go through one
// Lifecycle, which keeps the session and says which built-in events they make. The same rules
// run in the Python runtime (src/miniport/runtime/lifecycle.py); both are checked against the
// shared vectors in src/miniport/runtime/vectors/lifecycle.json.
//
// Rules:
// - `$session`: a new id at a cold start (the first `launch` of this runtime), and when the app
//   comes back to the foreground (`launch`, `show` or a page shown) after at least
//   `timeoutMs` (30 minutes) in the background. Anything reported before a launch gets a
//   session when it is first needed.
// - `$launch` {cold, path, query} at every `launch` (cold the first time, warm after);
//   `$show` {} when the app comes to the foreground (a launch included); `$hide` {} when it
//   goes to the background, after a `$pageleave` for the page still shown.
// - `$pageview` {path, query, referrer} when a page is shown (the referrer is the page shown
//   before it in the same session, '' for the first one); `$pageleave` {path, duration_ms}
//   when that page is hidden or unloaded (once per view). A page shown while another is still
//   open closes the other first. The query is the one given with the page, else the one it was
//   loaded with, else the launch query for the launch page.

export const SESSION_TIMEOUT_MS = 30 * 60 * 1000;
export const BUILTIN_EVENTS = Object.freeze(['$launch', '$show', '$hide', '$pageview', '$pageleave']);

/**
 * @typedef {{event: string, data: Record<string, unknown>, t: number, page: string | null}} BuiltinEvent
 * @typedef {{path?: string, query?: string | Record<string, unknown>, scene?: number}} LaunchInfo
 */

/** A query as WeChat's string form (`a=1&b=2`). @param {unknown} query @returns {string} */
export function queryString(query) {
  if (query === undefined || query === null) return '';
  if (typeof query === 'string') return query.replace(/^\?/, '');
  if (typeof query !== 'object') return String(query);
  return Object.entries(/** @type {Record<string, unknown>} */ (query))
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&');
}

export class Lifecycle {
  /** @param {{makeId: () => string, timeoutMs?: number}} options */
  constructor(options) {
    this.makeId = options.makeId;
    this.timeoutMs = options.timeoutMs ?? SESSION_TIMEOUT_MS;
    /** @type {string | null} */
    this.session = null;
    /** @type {number | null} launch scene */
    this.scene = null;
    this.launched = false;
    /** @type {number | null} when the app went to the background (null: in the foreground) */
    this.hiddenAt = null;
    /** @type {{path: string, shownAt: number} | null} the page view still open */
    this.open = null;
    this.lastPath = '';
    this.launchPath = '';
    this.launchQuery = '';
    /** @type {Map<string, string>} the query each page was loaded with */
    this.pageQueries = new Map();
  }

  /** The session for an event at `t` (made when there is none yet). @param {number} _t */
  sessionAt(_t) {
    if (this.session === null) this.newSession();
    return /** @type {string} */ (this.session);
  }

  newSession() {
    this.session = this.makeId();
    this.lastPath = '';
  }

  /** @param {number} t */
  expired(t) {
    return this.hiddenAt !== null && t - this.hiddenAt >= this.timeoutMs;
  }

  /**
   * @param {string} event @param {Record<string, unknown>} data @param {number} t
   * @returns {BuiltinEvent}
   */
  event(event, data, t) {
    return { event, data, t, page: this.open?.path ?? null };
  }

  /** @param {number} t @param {LaunchInfo} [info] @returns {BuiltinEvent[]} */
  launch(t, info = {}) {
    const cold = !this.launched;
    const wasHidden = cold || this.hiddenAt !== null;
    if (cold || this.session === null || this.expired(t)) this.newSession();
    this.launched = true;
    this.hiddenAt = null;
    if (typeof info.scene === 'number' && Number.isFinite(info.scene)) this.scene = info.scene;
    this.launchPath = info.path ?? '';
    this.launchQuery = queryString(info.query);
    const out = [this.event('$launch', { cold, path: this.launchPath, query: this.launchQuery }, t)];
    if (wasHidden) out.push(this.event('$show', {}, t));
    return out;
  }

  /** The app comes to the foreground. @param {number} t @returns {BuiltinEvent[]} */
  show(t) {
    if (this.hiddenAt === null && this.session !== null) return [];
    if (this.session === null || this.expired(t)) this.newSession();
    this.hiddenAt = null;
    return [this.event('$show', {}, t)];
  }

  /** The app goes to the background. @param {number} t @returns {BuiltinEvent[]} */
  hide(t) {
    if (this.hiddenAt !== null) return [];
    this.sessionAt(t);
    const out = this.open ? this.pageLeave(t, this.open.path) : [];
    this.hiddenAt = t;
    out.push(this.event('$hide', {}, t));
    return out;
  }

  /** @param {string} path @param {unknown} query */
  pageLoad(path, query) {
    if (query !== undefined && query !== null) this.pageQueries.set(path, queryString(query));
  }

  /** @param {number} t @param {string} path @param {unknown} [query] @returns {BuiltinEvent[]} */
  pageShow(t, path, query = undefined) {
    if (this.open?.path === path && this.hiddenAt === null) return [];
    const out = this.hiddenAt !== null || this.session === null ? this.show(t) : [];
    if (this.open) out.push(...this.pageLeave(t, this.open.path));
    let q = queryString(query);
    if (query === undefined || query === null) {
      q = this.pageQueries.get(path) ?? (path === this.launchPath ? this.launchQuery : '');
    }
    const referrer = this.lastPath;
    this.open = { path, shownAt: t };
    this.lastPath = path;
    out.push(this.event('$pageview', { path, query: q, referrer }, t));
    return out;
  }

  /** The page is hidden or unloaded. @param {number} t @param {string} path @returns {BuiltinEvent[]} */
  pageLeave(t, path) {
    if (!this.open || this.open.path !== path) return [];
    const duration = Math.max(0, Math.round(t - this.open.shownAt));
    const out = [this.event('$pageleave', { path, duration_ms: duration }, t)];
    this.open = null;
    return out;
  }

  /** What every event at `t` carries besides the batch's context. @param {number} t */
  context(t) {
    /** @type {Record<string, unknown>} */
    const context = { $session: this.sessionAt(t) };
    if (this.scene !== null) context.$scene = this.scene;
    return context;
  }
}
