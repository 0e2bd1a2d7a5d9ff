// Analytics reporting in the JavaScript runtime (src/miniport/web/sdk/analytics.js):
// wx.reportAnalytics / wx.reportEvent, batching, the offline queue kept in (a fake)
// localStorage across reloads, flushing on reconnect, the payload's shape, and the codeless
// evaluator driven through runtime.analytics with the configuration from the event stream.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createRuntime, MAX_BATCH } from '../../src/miniport/web/sdk/miniport-runtime.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CONFIG = {
  version: 3,
  test_id: null,
  fields: [{ name: 'price', type: 'int' }, { name: 'color', type: 'string' }],
  events: [
    { id: 1, name: 'purchase', display_name: '购买', mode: 'api', fields: ['price', 'color'], actions: [] },
    {
      id: 2,
      name: 'goods_click',
      display_name: '商品点击',
      mode: 'configured',
      fields: ['price', 'color'],
      actions: [{
        trigger: 'click', action: 'report', page: 'pages/list/list', element: '.buy',
        data: { price: 'goods[].price', color: '$DATASET.color' },
      }],
    },
  ],
};

/** localStorage's interface over a Map (what a page reload keeps). */
class FakeStorage {
  constructor() {
    this.map = new Map();
  }

  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }

  setItem(key, value) {
    this.map.set(key, String(value));
  }

  removeItem(key) {
    this.map.delete(key);
  }
}

/**
 * A fetch that records every call and answers from `answer(call)`: a [status, body] pair, or
 * 'network' to fail like an unreachable server.
 */
function fakeFetch(answer = () => [200, { accepted: 0, duplicates: 0, rejected: [] }]) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const call = { url: String(url), method: init.method ?? 'GET', headers: init.headers ?? {},
      body: init.body === undefined ? undefined : JSON.parse(init.body), keepalive: init.keepalive };
    calls.push(call);
    const result = answer(call);
    if (result === 'network') throw new TypeError('fetch failed');
    const [status, body] = result;
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
  };
  return { fetch, calls, posts: () => calls.filter((c) => c.url.endsWith('/analytics/events')) };
}

/** Accept every event of a batch (as the platform does for known events). */
const acceptAll = (call) => [200, { accepted: call.body?.events?.length ?? 0, duplicates: 0, rejected: [] }];

function runtimeWith({ fetch, storage = null, target = null, document = null, navigator = null, ...options } = {}) {
  return createRuntime({
    appid: 'mp1',
    token: 'rt-token',
    baseUrl: 'http://127.0.0.1:9',
    fetch,
    browser: null,
    analytics: { storage, target, document, navigator, flushIntervalMs: 60_000, ...options },
  });
}

async function waitFor(check, ms = 2000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('wx.reportAnalytics / wx.reportEvent', () => {
  test('return nothing, and queue one event each with WeChat\'s arguments', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch });
    assert.equal(runtime.wx.reportAnalytics('purchase', { price: 120, color: 'red' }), undefined);
    assert.equal(runtime.wx.reportEvent('purchase'), undefined);
    assert.equal(runtime.wx.reportEvent(1, { price: 5 }), undefined);
    assert.deepEqual(runtime.analytics.queue.map((e) => [e.event, e.data]),
      [['purchase', { price: 120, color: 'red' }], ['purchase', {}], [1, { price: 5 }]]);
    assert.equal(server.calls.length, 0, 'batched: nothing sent yet');
    runtime.analytics.close();
  });

  test('the batch payload: client ids, ts, sent_at, page / trigger / action', async () => {
    const server = fakeFetch(acceptAll);
    let clock = 1_700_000_000_000;
    const runtime = runtimeWith({ fetch: server.fetch, now: () => clock, builtinEvents: false });
    runtime.analytics.pageShow(clock, 'pages/order/order');
    runtime.wx.reportAnalytics('purchase', { price: 120, color: 'red' });
    clock += 250;
    runtime.wx.reportEvent('purchase', { price: 7 });
    clock += 1000;
    const result = await runtime.analytics.flush();
    assert.deepEqual(result, { accepted: 2, duplicates: 0, rejected: [] });
    const [post] = server.posts();
    assert.equal(post.method, 'POST');
    assert.equal(post.url, 'http://127.0.0.1:9/runtime/v1/apps/mp1/analytics/events');
    assert.equal(post.headers.Authorization, 'Bearer rt-token');
    assert.equal(post.headers['Content-Type'], 'application/json');
    assert.equal(post.body.sent_at, 1_700_000_001_250);
    assert.equal(post.body.events.length, 2);
    const [first, second] = post.body.events;
    assert.match(first.id, UUID);
    assert.notEqual(first.id, second.id);
    assert.match(first.context.$session, UUID, 'the session the runtime made');
    assert.deepEqual({ ...first, id: 'x' }, {
      id: 'x', event: 'purchase', data: { price: 120, color: 'red' }, ts: 1_700_000_000_000,
      page: 'pages/order/order', trigger: null, action: null, context: { $session: first.context.$session },
    });
    assert.deepEqual(post.body.context, { $sdk_version: '0.1.0', $session: first.context.$session });
    assert.equal(second.ts, 1_700_000_000_250);
    assert.equal(runtime.analytics.queue.length, 0);
    runtime.analytics.close();
  });

  test('bad arguments are logged, not queued (WeChat throws nothing either)', () => {
    const runtime = runtimeWith({ fetch: fakeFetch().fetch });
    const logged = [];
    const original = console.error;
    console.error = (message) => logged.push(message);
    try {
      runtime.wx.reportAnalytics(42, {});
      runtime.wx.reportAnalytics('', {});
      runtime.wx.reportEvent('purchase', 'not an object');
    } finally {
      console.error = original;
    }
    assert.equal(runtime.analytics.queue.length, 0);
    runtime.analytics.close();
    assert.match(logged[0], /^reportAnalytics:fail parameter error: event should be a non-empty String instead of Number/);
    assert.match(logged[2], /^reportEvent:fail parameter error: data should be Object instead of String/);
  });
});

describe('batching', () => {
  test('a full batch goes at once; the rest waits for the interval', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, batchSize: 3, flushIntervalMs: 150 });
    for (let i = 0; i < 3; i += 1) runtime.wx.reportAnalytics('purchase', { price: i });
    await waitFor(() => server.posts().length === 1);
    assert.deepEqual(server.posts()[0].body.events.map((e) => e.data.price), [0, 1, 2]);
    await waitFor(() => runtime.analytics.queue.length === 0);
    runtime.wx.reportAnalytics('purchase', { price: 3 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(server.posts().length, 1, 'one event waits for the interval');
    await waitFor(() => server.posts().length === 2);
    assert.deepEqual(server.posts()[1].body.events.map((e) => e.data.price), [3]);
    runtime.analytics.close();
  });

  test('one event is sent after flushIntervalMs, not before', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, flushIntervalMs: 120 });
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.equal(server.posts().length, 0);
    await waitFor(() => server.posts().length === 1);
    runtime.analytics.close();
  });

  test('a running test shortens the wait', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, flushIntervalMs: 60_000, testFlushIntervalMs: 20 });
    runtime.analytics.setConfig({ ...CONFIG, version: 0, test_id: 't_1' });
    assert.equal(runtime.analytics.testId, 't_1');
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    await waitFor(() => server.posts().length === 1);
    runtime.analytics.close();
  });

  test('at most 1000 events per batch', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, batchSize: 5000, maxQueue: 5000 });
    for (let i = 0; i < MAX_BATCH + 5; i += 1) runtime.wx.reportAnalytics('purchase', { price: i });
    await runtime.analytics.flush();
    assert.deepEqual(server.posts().map((p) => p.body.events.length), [MAX_BATCH, 5]);
    runtime.analytics.close();
  });

  test('a batch is at most 900 kB of UTF-8: long Chinese text goes in several, none dropped', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, batchSize: 5000, maxQueue: 5000 });
    const text = '数'.repeat(255);
    for (let i = 0; i < MAX_BATCH; i += 1) runtime.wx.reportEvent('purchase', { color: text, note: text });
    await runtime.analytics.flush();
    const sizes = server.posts().map((p) => Buffer.byteLength(JSON.stringify(p.body.events)));
    assert.ok(server.posts().length > 1 && sizes.every((n) => n <= 900_000), String(sizes));
    assert.equal(server.posts().reduce((n, p) => n + p.body.events.length, 0), MAX_BATCH);
    assert.equal(runtime.analytics.queue.length, 0);
    runtime.analytics.close();
  });

  test('pagehide and a hidden page send what waits, as a keepalive request', async () => {
    const server = fakeFetch(acceptAll);
    const target = new EventTarget();
    const document = { visibilityState: 'visible' };
    const runtime = runtimeWith({ fetch: server.fetch, target, document });
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    target.dispatchEvent(new Event('visibilitychange')); // still visible: nothing
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(server.posts().length, 0);
    document.visibilityState = 'hidden';
    target.dispatchEvent(new Event('visibilitychange'));
    await waitFor(() => server.posts().length === 1);
    assert.equal(server.posts()[0].keepalive, true);
    runtime.wx.reportAnalytics('purchase', { price: 2 });
    target.dispatchEvent(new Event('pagehide'));
    await waitFor(() => server.posts().length === 2);
    assert.equal(server.posts()[1].keepalive, true);
    assert.deepEqual(server.posts()[1].body.events.map((e) => e.data.price), [2]);
    runtime.analytics.close();
  });
});

describe('offline queue', () => {
  test('kept in localStorage across a reload, sent on `online`, then cleared', async () => {
    const storage = new FakeStorage();
    let online = false;
    const server = fakeFetch((call) => (online ? acceptAll(call) : 'network'));
    const first = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q', retryMs: 60_000 });
    const notices = [];
    first.analytics.onReport((notice) => notices.push(notice.type));
    first.wx.reportAnalytics('purchase', { price: 1 });
    first.wx.reportEvent('purchase', { price: 2 });
    assert.deepEqual(JSON.parse(storage.getItem('q')).events.map((e) => e.data.price), [1, 2]);
    assert.equal(await first.analytics.flush(), null);
    assert.equal(first.analytics.offline, true);
    assert.deepEqual(notices, ['queued', 'queued', 'failed']);
    const ids = JSON.parse(storage.getItem('q')).events.map((e) => e.id);
    first.analytics.close(); // the page goes away

    // the reload: a new runtime finds the queue and sends it once the device is online
    const target = new EventTarget();
    const second = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q', target, retryMs: 60_000 });
    assert.deepEqual(second.analytics.queue.map((e) => e.id), ids);
    const attempts = server.posts().length;
    online = true;
    target.dispatchEvent(new Event('online'));
    await waitFor(() => server.posts().length === attempts + 1);
    const sent = server.posts().at(-1).body;
    assert.deepEqual(sent.events.map((e) => e.id), ids, 'the same ids: the platform drops a resent one');
    await waitFor(() => storage.getItem('q') === null);
    assert.equal(second.analytics.queue.length, 0);
    second.analytics.close();
  });

  test('flushed by the next successful request to the platform', async () => {
    let online = false;
    const server = fakeFetch((call) => {
      if (!online) return 'network';
      if (call.url.endsWith('/login')) return [200, { code: 'c', errMsg: 'login:ok' }];
      return acceptAll(call);
    });
    const runtime = runtimeWith({ fetch: server.fetch, retryMs: 60_000 });
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    await runtime.analytics.flush();
    assert.equal(runtime.analytics.queue.length, 1);
    online = true;
    assert.equal((await runtime.wx.login()).errMsg, 'login:ok');
    await waitFor(() => runtime.analytics.queue.length === 0);
    assert.equal(server.posts().at(-1).body.events[0].data.price, 1);
    runtime.analytics.close();
  });

  test('navigator.onLine false: nothing is attempted until `online`', async () => {
    const server = fakeFetch(acceptAll);
    const navigator = { onLine: false };
    const target = new EventTarget();
    const runtime = runtimeWith({ fetch: server.fetch, navigator, target });
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    assert.equal(await runtime.analytics.flush(), null);
    assert.equal(server.calls.length, 0);
    navigator.onLine = true;
    target.dispatchEvent(new Event('online'));
    await waitFor(() => server.posts().length === 1);
    runtime.analytics.close();
  });

  test('a server error keeps the batch and retries it with the same ids; a refused batch is dropped', async () => {
    let status = 503;
    const server = fakeFetch((call) => (status === 200 ? acceptAll(call) : [status, { error: 'x', message: `status ${status}` }]));
    const runtime = runtimeWith({ fetch: server.fetch, retryMs: 30 });
    const notices = [];
    runtime.analytics.onReport((notice) => notices.push(notice));
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    await runtime.analytics.flush();
    assert.equal(runtime.analytics.queue.length, 1);
    const firstId = server.posts()[0].body.events[0].id;
    status = 200;
    await waitFor(() => runtime.analytics.queue.length === 0); // the retry timer
    assert.equal(server.posts().at(-1).body.events[0].id, firstId);

    status = 422;
    runtime.wx.reportAnalytics('purchase', { price: 2 });
    await runtime.analytics.flush();
    assert.equal(runtime.analytics.queue.length, 0);
    assert.deepEqual(notices.filter((n) => n.type !== 'queued').map((n) => [n.type, n.error ?? null]),
      [['failed', 'status 503'], ['sent', null], ['dropped', 'status 422']]);
    runtime.analytics.close();
  });

  test('half an emoji is sent as U+FFFD, not refused with its whole batch by the strict reader', async () => {
    const raw = [];
    const server = fakeFetch(acceptAll);
    const fetch = (url, init = {}) => { raw.push(init.body); return server.fetch(url, init); };
    const runtime = runtimeWith({ fetch });
    const half = '😀 great deal'.slice(0, 1); // a lone high surrogate
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    runtime.wx.reportAnalytics('purchase', { color: half, [`k${half}`]: 'v', when: new Date(0) });
    const result = await runtime.analytics.flush();
    assert.equal(result.accepted, 2);
    const body = raw.find((b) => b?.includes('"events"'));
    assert.ok(body.isWellFormed(), 'no lone surrogate goes on the wire');
    assert.deepEqual(server.posts()[0].body.events[1].data,
      { color: '\uFFFD', 'k\uFFFD': 'v', when: '1970-01-01T00:00:00.000Z' }); // a Date as JSON writes it
    runtime.analytics.close();
  });

  test('an event JSON cannot write is dropped when reported; the queue and its storage go on', async () => {
    const server = fakeFetch(acceptAll);
    const storage = new FakeStorage();
    const runtime = runtimeWith({ fetch: server.fetch, storage });
    const notices = [];
    runtime.analytics.onReport((notice) => notices.push(notice));
    const cyclic = { price: 3 };
    cyclic.self = cyclic;
    runtime.wx.reportAnalytics('purchase', { price: 10n });
    runtime.wx.reportAnalytics('purchase', cyclic);
    runtime.wx.reportAnalytics('purchase', { price: 2 });
    assert.deepEqual(notices.map((n) => n.type), ['dropped', 'dropped', 'queued']);
    assert.match(notices[0].error, /^event cannot be sent: .*BigInt/);
    assert.equal(JSON.parse(storage.getItem([...storage.map.keys()][0])).events.length, 1);
    assert.equal((await runtime.analytics.flush()).accepted, 1);
    assert.deepEqual(server.posts()[0].body.events.map((e) => e.data), [{ price: 2 }]);
    // report() says what was queued: the event as it will be sent, or null when it was not
    assert.equal(runtime.analytics.report('purchase', { price: 5n }), null);
    const queued = runtime.analytics.report('purchase', { when: new Date(0) });
    assert.deepEqual(queued.data, { when: '1970-01-01T00:00:00.000Z' });
    assert.equal(runtime.analytics.queue.at(-1).id, queued.id);
    queued.data.when = 'changed by the app'; // a copy: what is queued (and saved) stays
    assert.deepEqual(runtime.analytics.queue.at(-1).data, { when: '1970-01-01T00:00:00.000Z' });
    runtime.analytics.close();
    assert.equal(runtime.analytics.report('purchase', { price: 6 }), null); // closed
  });

  test('a 409 ("send it again") keeps the batch; flushes waiting on a failed send keep its backoff', async () => {
    const server = fakeFetch(() => [409, { error: 'conflict', message: 'send it again' }]);
    const runtime = runtimeWith({ fetch: server.fetch, retryMs: 60_000 });
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    await Promise.all([runtime.analytics.flush(), runtime.analytics.flush(), runtime.analytics.flush()]);
    assert.equal(server.posts().length, 1); // the others waited for it, then for the retry
    assert.equal(runtime.analytics.queue.length, 1);
    runtime.analytics.close();
  });

  test('the queue keeps at most maxQueue events (the newest)', () => {
    const storage = new FakeStorage();
    const runtime = runtimeWith({ fetch: fakeFetch().fetch, storage, maxQueue: 3, storageKey: 'q' });
    for (let i = 0; i < 5; i += 1) runtime.wx.reportAnalytics('purchase', { price: i });
    assert.deepEqual(runtime.analytics.queue.map((e) => e.data.price), [2, 3, 4]);
    assert.equal(JSON.parse(storage.getItem('q')).events.length, 3);
    runtime.analytics.close();
  });

  test('two runtimes (tabs) sharing one storage keep each other\'s unsent events', async (t) => {
    // each wrote its whole queue over the key: the other's unsent events were lost
    const storage = new FakeStorage();
    let online = false;
    const server = fakeFetch((call) => (online ? acceptAll(call) : 'network'));
    const a = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q', retryMs: 60_000 });
    const b = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q', retryMs: 60_000 });
    t.after(() => [a, b].forEach((r) => r.analytics.close()));
    a.wx.reportAnalytics('purchase', { price: 1 });
    b.wx.reportAnalytics('purchase', { price: 2 });
    a.wx.reportAnalytics('purchase', { price: 3 });
    await Promise.all([a.analytics.flush(), b.analytics.flush()]); // offline: both keep theirs
    b.wx.reportAnalytics('purchase', { price: 4 });
    const stored = () => (JSON.parse(storage.getItem('q') ?? '{"events":[]}').events)
      .map((e) => e.data.price).sort();
    assert.deepEqual(stored(), [1, 2, 3, 4]);
    a.analytics.close();
    b.analytics.close(); // both pages go away

    online = true;
    const c = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q' });
    t.after(() => c.analytics.close());
    assert.deepEqual(c.analytics.queue.map((e) => e.data.price).sort(), [1, 2, 3, 4]);
    await c.analytics.flush();
    assert.deepEqual(server.posts().at(-1).body.events.map((e) => e.data.price).sort(), [1, 2, 3, 4]);
    assert.equal(storage.getItem('q'), null);
    c.analytics.close();
  });

  test('a tab that sent its events removes only those from storage', async (t) => {
    const storage = new FakeStorage();
    const server = fakeFetch(acceptAll);
    const a = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q' });
    const b = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q' });
    t.after(() => [a, b].forEach((r) => r.analytics.close()));
    a.wx.reportAnalytics('purchase', { price: 1 });
    b.wx.reportAnalytics('purchase', { price: 2 });
    await a.analytics.flush();
    assert.deepEqual(server.posts().map((p) => p.body.events.map((e) => e.data.price)), [[1]]);
    assert.deepEqual(JSON.parse(storage.getItem('q')).events.map((e) => e.data.price), [2],
      'b\'s event waits in storage for b (or, if b dies, for the next runtime)');
    a.analytics.close();
    b.analytics.close(); // b goes away before its timer sent it
    const c = runtimeWith({ fetch: server.fetch, storage, storageKey: 'q' });
    t.after(() => c.analytics.close());
    await c.analytics.flush();
    assert.deepEqual(server.posts().map((p) => p.body.events.map((e) => e.data.price)), [[1], [2]]);
    assert.equal(storage.getItem('q'), null);
    c.analytics.close();
  });

  test('another tab\'s write that missed ours (a `storage` event) is repaired at once', (t) => {
    // browsers pass localStorage writes between tabs asynchronously: a tab may write over the
    // key without having seen the other's last write
    const storage = new FakeStorage();
    const target = new EventTarget();
    const a = runtimeWith({ fetch: fakeFetch().fetch, storage, storageKey: 'q', target });
    t.after(() => a.analytics.close());
    a.wx.reportAnalytics('purchase', { price: 1 });
    const [mine] = a.analytics.queue;
    const theirs = { id: 'other-tab-1', event: 'purchase', data: { price: 2 }, ts: 1, page: null,
      trigger: null, action: null };
    const raw = JSON.stringify({ v: 1, events: [theirs] });
    storage.setItem('q', raw);
    target.dispatchEvent(Object.assign(new Event('storage'), { key: 'q', newValue: raw }));
    assert.deepEqual(JSON.parse(storage.getItem('q')).events.map((e) => e.id),
      ['other-tab-1', mine.id]);
    // a write that has all of ours is left alone (no ping-pong between tabs)
    const writes = [];
    const setItem = storage.setItem.bind(storage);
    storage.setItem = (key, value) => { writes.push(key); setItem(key, value); };
    target.dispatchEvent(Object.assign(new Event('storage'), { key: 'q', newValue: storage.getItem('q') }));
    target.dispatchEvent(Object.assign(new Event('storage'), { key: 'other', newValue: null }));
    assert.deepEqual(writes, []);
    a.analytics.close();
    storage.setItem('q', raw);
    target.dispatchEvent(Object.assign(new Event('storage'), { key: 'q', newValue: raw }));
    assert.deepEqual(writes, ['q'], 'closed: no more writes (only the test\'s own)');
  });

  test('an event whose write was refused (storage full) goes in with the next write', (t) => {
    const storage = new FakeStorage();
    const a = runtimeWith({ fetch: fakeFetch().fetch, storage, storageKey: 'q' });
    t.after(() => a.analytics.close());
    const setItem = storage.setItem.bind(storage);
    storage.setItem = () => { throw new Error('QuotaExceededError'); };
    a.wx.reportAnalytics('purchase', { price: 1 });
    assert.equal(storage.getItem('q'), null);
    storage.setItem = setItem;
    a.wx.reportAnalytics('purchase', { price: 2 });
    assert.deepEqual(JSON.parse(storage.getItem('q')).events.map((e) => e.data.price), [1, 2]);
  });

  test('tabs sharing storage keep at most maxQueue events in it, the newest', (t) => {
    const storage = new FakeStorage();
    const a = runtimeWith({ fetch: fakeFetch().fetch, storage, maxQueue: 3, storageKey: 'q' });
    const b = runtimeWith({ fetch: fakeFetch().fetch, storage, maxQueue: 3, storageKey: 'q' });
    t.after(() => [a, b].forEach((r) => r.analytics.close()));
    for (let i = 0; i < 3; i += 1) a.wx.reportAnalytics('purchase', { price: i });
    for (let i = 3; i < 5; i += 1) b.wx.reportAnalytics('purchase', { price: i });
    assert.deepEqual(JSON.parse(storage.getItem('q')).events.map((e) => e.data.price), [2, 3, 4]);
    assert.equal(a.analytics.queue.length, 3, 'each still sends its own');
    a.analytics.close();
    b.analytics.close();
  });

  test('a corrupt stored queue is ignored', () => {
    const storage = new FakeStorage();
    storage.setItem('q', '{not json');
    const runtime = runtimeWith({ fetch: fakeFetch().fetch, storage, storageKey: 'q' });
    assert.deepEqual(runtime.analytics.queue, []);
    storage.setItem('q', JSON.stringify({ v: 1, events: [{ id: 'a', event: 'x' }, { nope: 1 }, 'y'] }));
    const again = runtimeWith({ fetch: fakeFetch().fetch, storage, storageKey: 'q' });
    assert.deepEqual(again.analytics.queue.map((e) => e.id), ['a']);
    runtime.analytics.close();
    again.analytics.close();
  });
});

describe('configuration and the codeless evaluator', () => {
  class FakeEventSource {
    static last = null;

    constructor(url) {
      this.url = url;
      this.handlers = {};
      FakeEventSource.last = this;
    }

    addEventListener(type, handler) {
      (this.handlers[type] ??= []).push(handler);
    }

    emit(type, data) {
      for (const handler of this.handlers[type] ?? []) handler({ data: JSON.stringify(data) });
    }

    close() {}
  }

  test('fetchConfig, then analyticsConfig messages from the event stream (this app only)', async () => {
    const server = fakeFetch((call) => (call.url.endsWith('/analytics/config') ? [200, CONFIG] : acceptAll(call)));
    const runtime = createRuntime({ appid: 'mp1', token: 't', baseUrl: 'http://127.0.0.1:9', fetch: server.fetch,
      EventSource: FakeEventSource, analytics: { storage: null, target: null } });
    const seen = [];
    runtime.analytics.onConfig(({ version, testId }) => seen.push([version, testId]));
    const config = await runtime.analytics.fetchConfig();
    assert.equal(config.version, 3);
    assert.equal(server.calls[0].method, 'GET');
    assert.equal(server.calls[0].url, 'http://127.0.0.1:9/runtime/v1/apps/mp1/analytics/config');
    assert.equal(runtime.analytics.config, config);

    runtime.on('analyticsConfig', () => undefined); // opens the stream
    const source = FakeEventSource.last;
    assert.ok(source.handlers.analyticsConfig, 'the runtime subscribes to analyticsConfig');
    source.emit('analyticsConfig', { type: 'analyticsConfig', appid: 'mp1', config: { ...CONFIG, version: 0, test_id: 't_9' }, test_id: 't_9' });
    source.emit('analyticsConfig', { type: 'analyticsConfig', appid: 'other', config: { version: 7, events: [] }, test_id: null });
    assert.deepEqual([runtime.analytics.version, runtime.analytics.testId], [0, 't_9']);
    source.emit('analyticsConfig', { type: 'analyticsConfig', appid: 'mp1', config: { ...CONFIG, version: 4, test_id: null }, test_id: null });
    assert.deepEqual(seen, [[3, null], [0, 't_9'], [4, null]]);
    runtime.close();
  });

  test('a reconnected event stream re-reads the configuration and sends what waits', async () => {
    let online = false;
    const server = fakeFetch((call) => {
      if (call.url.endsWith('/analytics/config')) return [200, { ...CONFIG, version: online ? 5 : 3 }];
      return online ? acceptAll(call) : 'network';
    });
    const runtime = createRuntime({ appid: 'mp1', token: 't', baseUrl: 'http://127.0.0.1:9', fetch: server.fetch,
      EventSource: FakeEventSource, analytics: { storage: null, target: null, retryMs: 60_000 } });
    await runtime.analytics.fetchConfig();
    runtime.on('connected', () => undefined);
    const source = FakeEventSource.last;
    source.emit('connected', { type: 'connected' });
    online = false;
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    await runtime.analytics.flush();
    assert.equal(runtime.analytics.queue.length, 1);
    online = true;
    source.emit('connected', { type: 'connected' }); // EventSource reconnected by itself
    await waitFor(() => runtime.analytics.queue.length === 0 && runtime.analytics.version === 5);
    runtime.analytics.close();
    runtime.close();
  });

  test('page lifecycle and taps drive the evaluator; emitted events are queued and reported', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, builtinEvents: false });
    const a = runtime.analytics;
    a.setConfig(CONFIG);
    assert.deepEqual(a.launch(1000), []);
    a.pageLoad(1100, 'pages/list/list', { goods: [{ price: 12 }, { price: 30 }] });
    a.pageShow(1100, 'pages/list/list');
    a.setData(1150, 'pages/list/list', { goods: [{ price: 13 }, { price: 31 }] });
    assert.deepEqual(a.click(1200, 'pages/list/list', { id: 'x', classes: ['other'], dataset: {}, indexes: [0] }), []);
    const emitted = a.click(1300, 'pages/list/list', { id: 'buy-2', classes: ['buy'], dataset: { color: 'red' }, indexes: [1] });
    assert.deepEqual(emitted.map((e) => [e.event, e.data]), [['goods_click', { price: 31, color: 'red' }]]);
    assert.deepEqual(a.click(1400, 'pages/detail/detail', { classes: ['buy'], indexes: [0] }), []);
    await a.flush();
    const [event] = server.posts()[0].body.events;
    assert.match(event.id, UUID);
    assert.deepEqual({ ...event, id: 'x' }, {
      id: 'x', event: 'goods_click', data: { price: 31, color: 'red' }, ts: 1300,
      page: 'pages/list/list', trigger: 'click', action: 'report', context: { $session: event.context.$session },
      v: 3, // the published version it was recorded under
    });
    a.close();
  });

  test('each event names the published version it was recorded under; none under a test', async () => {
    const server = fakeFetch(acceptAll);
    const runtime = runtimeWith({ fetch: server.fetch, builtinEvents: false });
    const a = runtime.analytics;
    a.report('purchase', { price: 1 }); // no configuration yet
    a.setConfig(CONFIG);
    a.report('purchase', { price: 2 });
    a.setConfig({ ...CONFIG, version: 0, test_id: 't_1' }); // a test of the draft
    a.report('purchase', { price: 3 });
    a.setConfig({ ...CONFIG, version: 4 }, null); // published again
    a.report('purchase', { price: 4 });
    await a.flush();
    const sent = server.posts().flatMap((p) => p.body.events);
    assert.deepEqual(sent.map((e) => [e.data.price, e.v]), [[1, undefined], [2, 3], [3, undefined], [4, 4]]);
    a.close();
    runtime.close();
  });

  test('sent results are announced with what the platform refused', async () => {
    const server = fakeFetch((call) => [200, { accepted: 1, duplicates: 0,
      rejected: [{ index: 1, id: call.body.events[1].id, reason: "unknown event 'nope'", code: 'unknown_event' }] }]);
    const runtime = runtimeWith({ fetch: server.fetch });
    const notices = [];
    runtime.analytics.onReport((notice) => notices.push(notice));
    runtime.wx.reportAnalytics('purchase', { price: 1 });
    runtime.wx.reportAnalytics('nope', {});
    await runtime.analytics.flush();
    const sent = notices.find((n) => n.type === 'sent');
    assert.equal(sent.events.length, 2);
    assert.equal(sent.result.rejected[0].reason, "unknown event 'nope'");
    assert.equal(runtime.analytics.queue.length, 0, 'a refused event is not sent again');
    runtime.analytics.close();
  });
});
