// wx storage (setStorage, getStorage, removeStorage, clearStorage, getStorageInfo and their Sync
// forms) with WeChat's limits: 1 MB per key, 10 MB per app, kept per app.
//
// Backing: localStorage in a browser, under a per-app prefix (`miniport.wx.<appid>:` unless the
// host gives one, e.g. one per signed-in user), so clearStorage never touches another app's keys
// (nor the analytics queue); in Node an in-memory map (or any injected storage with getItem,
// setItem, removeItem, key and length). Values keep their type: anything JSON can hold, Dates,
// and undefined. Sizes count the UTF-8 bytes of the key and of the stored value; getStorageInfo
// reports them in KB as WeChat does.

export const MAX_ITEM_BYTES = 1024 * 1024;
export const MAX_TOTAL_BYTES = 10 * 1024 * 1024;

/**
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void,
 *   removeItem(key: string): void, key(index: number): string | null, readonly length: number}} KeyedStorage
 */

/** An in-memory KeyedStorage (Node, or a browser without localStorage). */
export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.map = new Map();
  }

  get length() {
    return this.map.size;
  }

  /** @param {number} index */
  key(index) {
    return [...this.map.keys()][index] ?? null;
  }

  /** @param {string} key */
  getItem(key) {
    return this.map.get(key) ?? null;
  }

  /** @param {string} key @param {string} value */
  setItem(key, value) {
    this.map.set(key, String(value));
  }

  /** @param {string} key */
  removeItem(key) {
    this.map.delete(key);
  }
}

const encoder = new TextEncoder();
/** @param {string} text */
const bytes = (text) => encoder.encode(text).length;

/** The stored form of a value. @param {unknown} data @returns {string} */
function encode(data) {
  if (data === undefined) return JSON.stringify({ t: 'undefined' });
  if (data instanceof Date) return JSON.stringify({ t: 'Date', v: data.getTime() });
  const json = JSON.stringify(data);
  if (json === undefined) throw new TypeError(`cannot store a ${typeof data}`);
  return `{"t":"json","v":${json}}`;
}

/** @param {string} raw @returns {unknown} */
function decode(raw) {
  const stored = JSON.parse(raw);
  if (stored.t === 'Date') return new Date(stored.v);
  if (stored.t === 'undefined') return undefined;
  return stored.v;
}

/** A failure with WeChat's errMsg; the async forms pass it to `fail`, the Sync forms throw it. */
export class StorageError extends Error {
  /** @param {string} errMsg */
  constructor(errMsg) {
    super(errMsg);
    this.name = 'StorageError';
    this.errMsg = errMsg;
  }
}

/** One app's storage. */
export class WxStorage {
  /** @param {{appid: string, backing?: KeyedStorage | null, prefix?: string}} options */
  constructor(options) {
    this.prefix = options.prefix ?? `miniport.wx.${options.appid}:`;
    this.backing = options.backing ?? browserStorage() ?? new MemoryStorage();
  }

  /** @returns {string[]} the app's keys */
  keys() {
    const out = [];
    for (let i = 0; i < this.backing.length; i += 1) {
      const key = this.backing.key(i);
      if (key !== null && key.startsWith(this.prefix)) out.push(key.slice(this.prefix.length));
    }
    return out;
  }

  /** @param {string} key */
  itemBytes(key) {
    const raw = this.backing.getItem(this.prefix + key);
    return raw === null ? 0 : bytes(key) + bytes(raw);
  }

  totalBytes() {
    return this.keys().reduce((sum, key) => sum + this.itemBytes(key), 0);
  }

  /** @param {string} api @param {unknown} key */
  checkKey(api, key) {
    if (typeof key !== 'string' || key === '') {
      throw new StorageError(`${api}:fail parameter error: parameter.key should be String instead of ${
        key === null ? 'Null' : key === '' ? 'an empty String' : typeof key}`);
    }
  }

  /** @param {string} api @param {string} key @param {unknown} data */
  set(api, key, data) {
    this.checkKey(api, key);
    let raw;
    try {
      raw = encode(data);
    } catch (error) {
      throw new StorageError(`${api}:fail ${error instanceof Error ? error.message : String(error)}`);
    }
    const size = bytes(key) + bytes(raw);
    if (size > MAX_ITEM_BYTES) throw new StorageError(`${api}:fail exceed storage item max length`);
    if (this.totalBytes() - this.itemBytes(key) + size > MAX_TOTAL_BYTES) {
      throw new StorageError(`${api}:fail exceed storage max size 10MB`);
    }
    try {
      this.backing.setItem(this.prefix + key, raw);
    } catch {
      throw new StorageError(`${api}:fail exceed storage max size 10MB`); // the browser's own quota
    }
  }

  /** @param {string} api @param {string} key @returns {{found: boolean, data: unknown}} */
  get(api, key) {
    this.checkKey(api, key);
    const raw = this.backing.getItem(this.prefix + key);
    if (raw === null) return { found: false, data: undefined };
    try {
      return { found: true, data: decode(raw) };
    } catch {
      return { found: false, data: undefined }; // not ours (written by something else)
    }
  }

  /** @param {string} api @param {string} key */
  remove(api, key) {
    this.checkKey(api, key);
    this.backing.removeItem(this.prefix + key);
  }

  clear() {
    for (const key of this.keys()) this.backing.removeItem(this.prefix + key);
  }

  /** @returns {{keys: string[], currentSize: number, limitSize: number}} sizes in KB */
  info() {
    return { keys: this.keys(), currentSize: Math.ceil(this.totalBytes() / 1024), limitSize: MAX_TOTAL_BYTES / 1024 };
  }
}

/** @returns {KeyedStorage | null} */
function browserStorage() {
  try {
    const storage = /** @type {any} */ (globalThis).localStorage;
    return storage && typeof storage.key === 'function' ? storage : null;
  } catch {
    return null;
  }
}
