// Codeless ("configured") analytics evaluator: the JavaScript twin of
// src/miniport/analytics/evaluator.py, whose module documentation is the reference for
// the semantics. Both are checked against the shared JSON vectors in
// src/miniport/analytics/vectors/; change one, change the other, add a vector.
//
// Pure code: no I/O, no clock reads (every call carries its time `t` in ms), no
// dependencies; runs unchanged in a modern browser and in Node 20.

/**
 * @typedef {unknown} JsonValue  any value parsed from JSON
 * @typedef {{[key: string]: unknown}} JsonObject
 * @typedef {{id?: string | null, classes?: string[], dataset?: JsonObject, indexes?: number[]}} Element
 * @typedef {{event: JsonValue, event_id: JsonValue, data: JsonObject, page: string,
 *            trigger: string, action: 'report', t: number}} EmittedEvent
 * @typedef {{kind: 'class' | 'id', name: string}} Selector
 * @typedef {'path' | 'index' | 'dataset' | 'app' | 'page_time' | 'app_time' | 'current_page'
 *           | 'last_page'} SourceKind
 * @typedef {{kind: SourceKind, steps: (string | number)[], level: number, key: string}} Source
 *   For `path`, `steps` holds page data keys (strings) and element-index placeholders
 *   (number n: the value of `indexes[n]`).
 * @typedef {{trigger: string, kind: string, page: string | null, selector: Selector | null,
 *            sources: [string, Source | null][]}} Action
 * @typedef {{id: JsonValue, name: JsonValue, actions: Action[], multiStep: boolean}} CompiledEvent
 * @typedef {{data: JsonObject, loadedAt: number | null, shownAt: number | null}} PageState
 * @typedef {{t: number, trigger: string, page: string | null, element: Element | null}} Call
 */

export const ANY_PAGE = 'ANY_PAGE';
export const PAGE_TRIGGERS = Object.freeze([
  'click', 'enterPage', 'leavePage', 'pageLoad', 'pageUnload', 'switchTab', 'pullDownRefresh',
]);
export const PAGELESS_TRIGGERS = Object.freeze(['launch', 'background', 'foreground', 'share']);

const SELECTOR_RE = /^([.#])([A-Za-z0-9_-]+)$/;
const SEGMENT_RE = /^([^.[\]$][^.[\]]*)((?:\[\])*)$/;
const INDEX_RE = /^(?:0|[1-9][0-9]*)$/;
/** @type {Readonly<Record<string, SourceKind>>} */
const SYSTEM_SOURCES = Object.freeze({
  $PAGE_TIME: 'page_time',
  $APP_TIME: 'app_time',
  $CURRENT_PAGE: 'current_page',
  $LAST_PAGE: 'last_page',
});
/** @type {[string, SourceKind][]} */
const KEYED_SOURCES = [['$DATASET.', 'dataset'], ['$APP.', 'app']];
const NOTHING = Symbol('nothing');

/** @param {unknown} value @returns {value is JsonObject} */
const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

/** @param {unknown} value */
const isPrimitive = (value) =>
  value === null || ['string', 'number', 'boolean'].includes(typeof value);

/**
 * Own property of a plain object, or NOTHING (never an inherited one such as `toString`).
 * @param {unknown} object @param {string} key @returns {unknown}
 */
const own = (object, key) => (isObject(object) && Object.hasOwn(object, key) ? object[key] : NOTHING);

/**
 * Strip one leading `/` and any `?query` from a page path.
 * @param {string} page @returns {string}
 */
export function normalizePage(page) {
  const path = page.startsWith('/') ? page.slice(1) : page;
  const query = path.indexOf('?');
  return query === -1 ? path : path.slice(0, query);
}

/**
 * Parse `.class` or `#id`; `null` for anything else.
 * @param {unknown} text @returns {Selector | null}
 */
export function parseSelector(text) {
  const match = typeof text === 'string' ? SELECTOR_RE.exec(text) : null;
  return match ? { kind: match[1] === '.' ? 'class' : 'id', name: match[2] } : null;
}

/**
 * @param {Selector} selector @param {Element} element @returns {boolean}
 */
export function selectorMatches(selector, element) {
  if (selector.kind === 'id') return element.id === selector.name;
  return Array.isArray(element.classes) && element.classes.includes(selector.name);
}

/**
 * Parse a value source string; `null` when it is not valid.
 * @param {unknown} text @returns {Source | null}
 */
export function parseSource(text) {
  if (typeof text !== 'string' || text === '') return null;
  /** @param {SourceKind} kind @returns {Source} */
  const source = (kind, { steps = /** @type {(string|number)[]} */ ([]), level = 0, key = '' } = {}) =>
    ({ kind, steps, level, key });
  if (text.startsWith('$')) {
    if (Object.hasOwn(SYSTEM_SOURCES, text)) return source(SYSTEM_SOURCES[text]);
    for (const [prefix, kind] of KEYED_SOURCES) {
      if (text.startsWith(prefix) && text.length > prefix.length) {
        return source(kind, { key: text.slice(prefix.length) });
      }
    }
    return null;
  }
  const segments = text.split('.');
  /** @type {(string | number)[]} */
  const steps = [];
  let levels = 0;
  for (const [position, segment] of segments.entries()) {
    if (segment === '$INDEX' && position === segments.length - 1 && levels > 0) {
      return source('index', { level: levels - 1 });
    }
    const match = SEGMENT_RE.exec(segment);
    if (!match) return null;
    steps.push(match[1]);
    for (let i = 0; i < match[2].length / 2; i += 1) steps.push(levels++);
  }
  return source('path', { steps });
}

/**
 * `element.indexes[level]` if it is a non-negative integer.
 * @param {Element | null} element @param {number} level @returns {number | null}
 */
function elementIndex(element, level) {
  const indexes = element ? element.indexes : undefined;
  if (!Array.isArray(indexes) || level >= indexes.length) return null;
  const value = indexes[level];
  return Number.isInteger(value) && value >= 0 ? value : null;
}

/**
 * @param {unknown} root @param {(string | number)[]} steps @param {Element | null} element
 * @returns {unknown}
 */
function resolvePath(root, steps, element) {
  let value = root;
  for (const step of steps) {
    if (typeof step === 'number') {
      const index = elementIndex(element, step);
      if (index === null || !Array.isArray(value) || index >= value.length) return NOTHING;
      value = value[index];
    } else if (isObject(value)) {
      value = own(value, step);
      if (value === NOTHING) return NOTHING;
    } else if (Array.isArray(value) && INDEX_RE.test(step) && step.length < 16) {
      if (Number(step) >= value.length) return NOTHING;
      value = value[Number(step)];
    } else {
      return NOTHING;
    }
  }
  return value;
}

/**
 * @param {Action} action @param {string} trigger @param {string} page
 * @param {Element | null} element @returns {boolean}
 */
function actionMatches(action, trigger, page, element) {
  if (action.trigger !== trigger) return false;
  const pageMatches = action.page === ANY_PAGE || (action.page !== null && action.page === page);
  if (PAGE_TRIGGERS.includes(trigger) && !pageMatches) return false;
  if (trigger === 'click') {
    return action.selector !== null && isObject(element) && selectorMatches(action.selector, element);
  }
  return true;
}

/** @param {JsonObject} raw @returns {Action} */
function compileAction(raw) {
  const page = raw.page;
  const data = raw.data;
  return {
    trigger: typeof raw.trigger === 'string' ? raw.trigger : '',
    kind: typeof raw.action === 'string' ? raw.action : '',
    page: typeof page === 'string' ? normalizePage(page) : null,
    selector: parseSelector(raw.element),
    sources: Object.entries(isObject(data) ? data : {}).map(([name, source]) => [name, parseSource(source)]),
  };
}

/** @param {JsonObject} config @returns {CompiledEvent[]} */
function compile(config) {
  const events = Array.isArray(config.events) ? config.events : [];
  /** @type {CompiledEvent[]} */
  const compiled = [];
  for (const raw of events) {
    if (!isObject(raw) || raw.mode !== 'configured') continue;
    const actions = (Array.isArray(raw.actions) ? raw.actions : []).filter(isObject).map(compileAction);
    const multiStep = actions.some((action) => action.kind === 'start');
    compiled.push({ id: raw.id ?? null, name: raw.name ?? null, actions, multiStep });
  }
  return compiled;
}

/**
 * Decides which configured events a sequence of container calls reports. Every call
 * method returns the events emitted by that call, in configuration order.
 */
export class Evaluator {
  /** @type {CompiledEvent[]} */
  #events = [];
  /** @type {JsonObject} */
  #appData;
  /** @type {Map<string, PageState>} */
  #pages = new Map();
  /** Loaded or shown pages, most recently activated last. @type {string[]} */
  #active = [];
  /** The last two distinct pages shown, oldest first. @type {string[]} */
  #shown = [];
  /** @type {number | null} */
  #launchedAt = null;
  /** Pending multi-step collections by event id. @type {Map<JsonValue, JsonObject>} */
  #pending = new Map();

  /** @param {JsonObject} config @param {JsonObject | null} [appData] */
  constructor(config, appData = null) {
    this.#appData = { ...(appData ?? {}) };
    this.setConfig(config);
  }

  // -- configuration and data ------------------------------------------------------------

  /**
   * Replace the configuration; page state is kept, and pending collections too for the
   * events still present (same id) and still multi-step.
   * @param {JsonObject} config
   */
  setConfig(config) {
    this.#events = compile(config);
    const kept = new Set(this.#events.filter((event) => event.multiStep).map((event) => event.id));
    for (const id of [...this.#pending.keys()]) {
      if (!kept.has(id)) this.#pending.delete(id);
    }
  }

  /** @param {number} t @param {JsonObject} data @returns {EmittedEvent[]} */
  setAppData(t, data) {
    this.#appData = { ...this.#appData, ...data };
    return [];
  }

  /** @param {number} t @param {string} page @param {JsonObject} data @returns {EmittedEvent[]} */
  setData(t, page, data) {
    const state = this.#pageState(normalizePage(page));
    state.data = { ...state.data, ...data };
    return [];
  }

  // -- page lifecycle --------------------------------------------------------------------

  /** @param {number} t @param {string} page @param {JsonObject | null} [data] @returns {EmittedEvent[]} */
  pageLoad(t, page, data = null) {
    const path = normalizePage(page);
    this.#pages.set(path, { data: { ...(data ?? {}) }, loadedAt: t, shownAt: null });
    this.#activate(path);
    return this.#fire({ t, trigger: 'pageLoad', page: path, element: null });
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pageShow(t, page) {
    const path = normalizePage(page);
    this.#pageState(path).shownAt = t;
    this.#activate(path);
    if (this.#shown.at(-1) !== path) this.#shown = [...this.#shown.slice(-1), path];
    return this.#fire({ t, trigger: 'enterPage', page: path, element: null });
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pageHide(t, page) {
    return this.#fire({ t, trigger: 'leavePage', page: normalizePage(page), element: null });
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pageUnload(t, page) {
    const path = normalizePage(page);
    const events = this.#fire({ t, trigger: 'pageUnload', page: path, element: null });
    this.#pages.delete(path);
    this.#active = this.#active.filter((active) => active !== path);
    return events;
  }

  /** @param {number} t @param {string} page @param {Element | null} element @returns {EmittedEvent[]} */
  click(t, page, element) {
    return this.#fire({ t, trigger: 'click', page: normalizePage(page), element: element ?? null });
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  switchTab(t, page) {
    return this.#fire({ t, trigger: 'switchTab', page: normalizePage(page), element: null });
  }

  /** @param {number} t @param {string} page @returns {EmittedEvent[]} */
  pullDownRefresh(t, page) {
    return this.#fire({ t, trigger: 'pullDownRefresh', page: normalizePage(page), element: null });
  }

  // -- page-less triggers ----------------------------------------------------------------

  /** @param {number} t @returns {EmittedEvent[]} */
  launch(t) {
    this.#pending.clear();
    this.#launchedAt = t;
    return this.#fire({ t, trigger: 'launch', page: this.#currentPage(), element: null });
  }

  /** @param {number} t @returns {EmittedEvent[]} */
  background(t) {
    return this.#fire({ t, trigger: 'background', page: this.#currentPage(), element: null });
  }

  /** @param {number} t @returns {EmittedEvent[]} */
  foreground(t) {
    return this.#fire({ t, trigger: 'foreground', page: this.#currentPage(), element: null });
  }

  /** @param {number} t @param {string | null} [page] @returns {EmittedEvent[]} */
  share(t, page = null) {
    const path = page === null || page === undefined ? this.#currentPage() : normalizePage(page);
    return this.#fire({ t, trigger: 'share', page: path, element: null });
  }

  // -- internals -------------------------------------------------------------------------

  /** @param {string} path @returns {PageState} */
  #pageState(path) {
    let state = this.#pages.get(path);
    if (!state) {
      state = { data: {}, loadedAt: null, shownAt: null };
      this.#pages.set(path, state);
    }
    return state;
  }

  /** @param {string} path */
  #activate(path) {
    this.#active = [...this.#active.filter((active) => active !== path), path];
  }

  /** @returns {string | null} */
  #currentPage() {
    return this.#active.length ? this.#active[this.#active.length - 1] : null;
  }

  /** @param {Call} call @returns {EmittedEvent[]} */
  #fire(call) {
    /** @type {EmittedEvent[]} */
    const emitted = [];
    const page = call.page ?? '';
    for (const event of this.#events) {
      for (const action of event.actions) {
        if (action.kind !== 'start' && action.kind !== 'report') continue;
        if (!actionMatches(action, call.trigger, page, call.element)) continue;
        const values = this.#values(action, call);
        if (action.kind === 'start') { // only multi-step events have one
          this.#pending.set(event.id, values);
        } else if (!event.multiStep) {
          emitted.push(emit(event, call, values));
        } else if (this.#pending.has(event.id)) {
          const pending = /** @type {JsonObject} */ (this.#pending.get(event.id));
          this.#pending.delete(event.id);
          emitted.push(emit(event, call, { ...pending, ...values }));
        }
      }
    }
    return emitted;
  }

  /** @param {Action} action @param {Call} call @returns {JsonObject} */
  #values(action, call) {
    /** @type {JsonObject} */
    const values = {};
    for (const [name, source] of action.sources) {
      const value = source === null ? NOTHING : this.#value(source, call);
      if (value !== NOTHING && isPrimitive(value)) {
        Object.defineProperty(values, name, { value, enumerable: true, writable: true, configurable: true });
      }
    }
    return values;
  }

  /** @param {Source} source @param {Call} call @returns {unknown} */
  #value(source, call) {
    const state = call.page === null ? undefined : this.#pages.get(call.page);
    const element = call.element;
    switch (source.kind) {
      case 'path':
        return resolvePath(state ? state.data : NOTHING, source.steps, element);
      case 'index': {
        const index = elementIndex(element, source.level);
        return index === null ? NOTHING : index;
      }
      case 'dataset':
        return own(element ? element.dataset : undefined, source.key);
      case 'app':
        return own(this.#appData, source.key);
      case 'page_time': {
        const since = state ? state.shownAt ?? state.loadedAt : null;
        return since === null ? NOTHING : call.t - since;
      }
      case 'app_time':
        return this.#launchedAt === null ? NOTHING : call.t - this.#launchedAt;
      case 'current_page':
        return call.page === null ? NOTHING : call.page;
      case 'last_page':
        return this.#shown.filter((shown) => shown !== call.page).at(-1) ?? '';
      default:
        return NOTHING;
    }
  }
}

/**
 * @param {CompiledEvent} event @param {Call} call @param {JsonObject} data
 * @returns {EmittedEvent}
 */
function emit(event, call, data) {
  return {
    event: event.name,
    event_id: event.id,
    data,
    page: call.page ?? '',
    trigger: call.trigger,
    action: 'report',
    t: call.t,
  };
}
