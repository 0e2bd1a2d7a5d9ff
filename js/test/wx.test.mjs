// The wx-compatible runtime (src/miniport/web/sdk/wx.js): callbacks and promises, WeChat's
// result shapes and errMsg strings. HTTP goes to a small server on 127.0.0.1 that answers like
// Miniport's runtime API; the event stream uses an injected EventSource.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { createRuntime, ERRNO } from '../../src/miniport/web/sdk/miniport-runtime.js';

/** @type {{method: string, url: string, headers: Record<string, unknown>, body: string}[]} */
const seen = [];
let base = '';
let server;

const routes = {
  'POST /runtime/v1/apps/mp1/launch': () => [200, { errMsg: 'launch:ok', prefetch: true }],
  'POST /runtime/v1/apps/mp1/background-fetch/token': (body) => (JSON.parse(body).token === 'bad'
    ? [422, { error: 'invalid_input', errMsg: 'setBackgroundFetchToken:fail token must be 1..1024 characters' }]
    : [200, { errMsg: 'setBackgroundFetchToken:ok' }]),
  'GET /runtime/v1/apps/mp1/background-fetch/token': () => [200, { token: 't-1', errMsg: 'getBackgroundFetchToken:ok' }],
  'GET /runtime/v1/apps/mp2/background-fetch/token': () => [404, {
    error: 'token_not_set',
    errMsg: 'getBackgroundFetchToken:fail token not set, maybe you should setBackgroundFetchToken first',
  }],
  'GET /runtime/v1/apps/mp1/background-fetch/data': (_body, url) => (url.searchParams.get('fetchType') === 'pre'
    ? [200, { fetchedData: '{"a":1}', timeStamp: 1700000000123, path: 'pages/a', query: 'x=1', scene: 1007, errMsg: 'getBackgroundFetchData:ok' }]
    : [200, { fetchedData: 'periodic body', timeStamp: 1700000000456, errMsg: 'getBackgroundFetchData:ok' }]),
  'GET /runtime/v1/apps/mp2/background-fetch/data': () => [404, {
    error: 'no_data', errMsg: 'getBackgroundFetchData:fail no data has been fetched yet',
  }],
  'POST /runtime/v1/apps/mp1/login': () => [200, { code: 'code-123', errMsg: 'login:ok' }],
  'POST /runtime/v1/apps/slow/login': () => [200, { code: 'late', errMsg: 'login:ok' }, 500],
  'GET /runtime/v1/apps/html/background-fetch/token': () => [502, '<html>bad gateway</html>'],
  'GET /runtime/v1/apps/gone/background-fetch/token': () => [401, {
    error: 'unauthorized', message: 'runtime token revoked',
  }],
};

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const url = new URL(req.url, 'http://127.0.0.1');
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      const route = routes[`${req.method} ${url.pathname}`];
      const [status, answer, delay = 0] = route ? route(body, url) : [404, { error: 'not_found' }];
      setTimeout(() => {
        res.writeHead(status, { 'Content-Type': typeof answer === 'string' ? 'text/html' : 'application/json' });
        res.end(typeof answer === 'string' ? answer : JSON.stringify(answer));
      }, delay);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => {
  server.closeAllConnections?.();
  server.close(resolve);
}));

const wxFor = (appid = 'mp1', extra = {}) => createRuntime({ appid, token: 'rt-token', baseUrl: base, ...extra }).wx;

/** Call with callbacks; resolves with {kind, value, completed, returned}. */
/** An injectable EventSource that records its instances ([sources, constructor]). */
function fakeEventSources() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.handlers = {};
      this.readyState = 1;
      this.onerror = null;
      sources.push(this);
    }

    addEventListener(type, handler) {
      (this.handlers[type] ??= []).push(handler);
    }

    emit(type, data) {
      for (const handler of this.handlers[type] ?? []) handler({ data: JSON.stringify(data) });
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }
  }
  return [sources, FakeEventSource];
}

/** Wait (at most 2 s) until `ready()` holds. */
async function until(ready) {
  for (let i = 0; i < 400 && !ready(); i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(ready(), 'waited 2 s');
}

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

describe('getBackgroundFetchData', () => {
  test('promise: the WeChat result for pre-fetched data', async () => {
    const res = await wxFor().getBackgroundFetchData({ fetchType: 'pre', waitMs: 2500 });
    assert.deepEqual(res, {
      fetchedData: '{"a":1}', timeStamp: 1700000000123, path: 'pages/a', query: 'x=1', scene: 1007,
      errMsg: 'getBackgroundFetchData:ok',
    });
    const request = seen.at(-1);
    assert.equal(request.method, 'GET');
    assert.equal(request.url, '/runtime/v1/apps/mp1/background-fetch/data?fetchType=pre&waitMs=2500');
    assert.equal(request.headers.authorization, 'Bearer rt-token');
  });

  test('periodic data has every field of the WeChat result', async () => {
    const res = await wxFor().getBackgroundFetchData({ fetchType: 'periodic' });
    assert.deepEqual(res, {
      fetchedData: 'periodic body', timeStamp: 1700000000456, path: '', query: '', scene: 0,
      errMsg: 'getBackgroundFetchData:ok',
    });
  });

  test('callbacks: success then complete with the same result, and no promise', async () => {
    const got = await withCallbacks((cb) => wxFor().getBackgroundFetchData({ fetchType: 'pre', ...cb }));
    assert.equal(got.returned, undefined);
    assert.equal(got.kind, 'success');
    assert.equal(got.value.errMsg, 'getBackgroundFetchData:ok');
    assert.equal(got.completed, got.value);
  });

  test('no data: fail and complete get the errMsg; the promise rejects with it', async () => {
    const got = await withCallbacks((cb) => wxFor('mp2').getBackgroundFetchData({ fetchType: 'pre', ...cb }));
    assert.equal(got.kind, 'fail');
    assert.deepEqual(got.value, { errMsg: 'getBackgroundFetchData:fail no data has been fetched yet', errno: ERRNO.UNKNOWN });
    assert.equal(got.completed, got.value);
    await assert.rejects(wxFor('mp2').getBackgroundFetchData({ fetchType: 'periodic' }),
      { errMsg: 'getBackgroundFetchData:fail no data has been fetched yet' });
  });

  test('a missing fetchType is a parameter error, as WeChat words it', async () => {
    await assert.rejects(wxFor().getBackgroundFetchData({}), {
      errMsg: 'getBackgroundFetchData:fail parameter error: parameter.fetchType should be String instead of Undefined;',
      errno: ERRNO.PARAMETER,
    });
  });

  test('an unreachable platform: network error', async () => {
    const wx = createRuntime({ appid: 'mp1', token: 't', baseUrl: 'http://127.0.0.1:9' }).wx;
    const error = await wx.getBackgroundFetchData({ fetchType: 'pre' }).catch((e) => e);
    assert.match(error.errMsg, /^getBackgroundFetchData:fail network error: /);
    assert.equal(error.errno, ERRNO.NETWORK);
  });
});

describe('background fetch token', () => {
  test('set: promise and callbacks', async () => {
    assert.deepEqual(await wxFor().setBackgroundFetchToken({ token: 'abc' }), { errMsg: 'setBackgroundFetchToken:ok' });
    assert.deepEqual(JSON.parse(seen.at(-1).body), { token: 'abc' });
    const got = await withCallbacks((cb) => wxFor().setBackgroundFetchToken({ token: 'abc', ...cb }));
    assert.deepEqual([got.kind, got.value.errMsg], ['success', 'setBackgroundFetchToken:ok']);
  });

  test('set: a non-string token fails before any request', async () => {
    const count = seen.length;
    const got = await withCallbacks((cb) => wxFor().setBackgroundFetchToken({ token: 42, ...cb }));
    assert.equal(got.kind, 'fail');
    assert.equal(got.value.errMsg,
      'setBackgroundFetchToken:fail parameter error: parameter.token should be String instead of Number;');
    assert.equal(seen.length, count);
    await assert.rejects(wxFor().setBackgroundFetchToken({ token: 'x'.repeat(1025) }),
      { errMsg: 'setBackgroundFetchToken:fail token must be at most 1024 characters' });
    await assert.rejects(wxFor().setBackgroundFetchToken({ token: '😀'.repeat(1025) }),
      { errMsg: 'setBackgroundFetchToken:fail token must be at most 1024 characters' });
  });

  test('set: the limit counts characters, as the platform does, not UTF-16 units', async () => {
    const count = seen.length;
    const got = await withCallbacks((cb) => wxFor().setBackgroundFetchToken({ token: '😀'.repeat(600), ...cb }));
    assert.equal(got.kind, 'success');
    assert.equal(seen.length, count + 1); // sent: 600 characters (1,200 units)
  });

  test('set: the platform refusal keeps its errMsg', async () => {
    await assert.rejects(wxFor().setBackgroundFetchToken({ token: 'bad' }),
      { errMsg: 'setBackgroundFetchToken:fail token must be 1..1024 characters' });
  });

  test('get: the token, or WeChat\'s fail when none is set', async () => {
    assert.deepEqual(await wxFor().getBackgroundFetchToken(), { token: 't-1', errMsg: 'getBackgroundFetchToken:ok' });
    const got = await withCallbacks((cb) => wxFor('mp2').getBackgroundFetchToken(cb));
    assert.equal(got.value.errMsg,
      'getBackgroundFetchToken:fail token not set, maybe you should setBackgroundFetchToken first');
  });

  test('a non-JSON answer is a fail with the HTTP status', async () => {
    await assert.rejects(wxFor('html').getBackgroundFetchToken(),
      { errMsg: 'getBackgroundFetchToken:fail bad response (HTTP 502)' });
  });
});

describe('login', () => {
  test('a one-time code', async () => {
    assert.deepEqual(await wxFor().login(), { code: 'code-123', errMsg: 'login:ok' });
    assert.equal(seen.at(-1).method, 'POST');
    const got = await withCallbacks((cb) => wxFor().login(cb));
    assert.deepEqual(got.value, { code: 'code-123', errMsg: 'login:ok' });
  });

  test('timeout: login:fail timeout with its errno', async () => {
    const got = await withCallbacks((cb) => wxFor('slow').login({ timeout: 50, ...cb }));
    assert.equal(got.kind, 'fail');
    assert.deepEqual(got.value, { errMsg: 'login:fail timeout', errno: ERRNO.TIMEOUT });
  });
});

describe('launch and the event stream', () => {
  test('launch reports the cold start', async () => {
    const runtime = createRuntime({ appid: 'mp1', token: 'rt-token', baseUrl: base });
    assert.deepEqual(await runtime.launch({ path: 'pages/index/index', query: { id: 3 }, scene: 1011 }),
      { errMsg: 'launch:ok', prefetch: true });
    assert.deepEqual(JSON.parse(seen.at(-1).body), { path: 'pages/index/index', query: { id: 3 }, scene: 1011 });
  });

  test('onBackgroundFetchData: WeChat\'s listener result, for this app only', () => {
    const [sources, FakeEventSource] = fakeEventSources();
    const runtime = createRuntime({ appid: 'mp1', token: 'a b', baseUrl: base, EventSource: FakeEventSource });
    const got = [];
    const listener = (res) => got.push(res);
    runtime.wx.onBackgroundFetchData(listener);
    runtime.wx.onBackgroundFetchData(() => got.push('second'));
    assert.equal(sources.length, 1, 'one stream for every listener');
    assert.equal(sources[0].url, `${base}/runtime/v1/events?access_token=a%20b&appid=mp1`);
    const refreshes = [];
    runtime.on('devtoolsRefresh', (message) => refreshes.push(message.verdict));
    sources[0].emit('backgroundFetchData', {
      type: 'backgroundFetchData', appid: 'mp1', fetchType: 'periodic', fetchedData: 'new', timeStamp: 5, path: null, query: null, scene: null,
    });
    sources[0].emit('backgroundFetchData', { type: 'backgroundFetchData', appid: 'other', fetchType: 'pre', fetchedData: 'x' });
    sources[0].emit('devtoolsRefresh', { type: 'devtoolsRefresh', appid: 'mp1', verdict: 'cached' });
    assert.deepEqual(got, [
      { fetchType: 'periodic', fetchedData: 'new', path: '', query: '', scene: 0, timeStamp: 5 }, 'second',
    ]);
    assert.deepEqual(refreshes, ['cached']);
    runtime.wx.offBackgroundFetchData(listener);
    sources[0].emit('backgroundFetchData', { type: 'backgroundFetchData', appid: 'mp1', fetchType: 'pre', fetchedData: 'y', timeStamp: 6 });
    assert.equal(got.length, 3);
    assert.equal(got[2], 'second');
    runtime.close();
    assert.equal(sources[0].closed, true);
  });

  test('unauthorized: the listener hears it, the stream closes, a new token opens another', () => {
    const [sources, FakeEventSource] = fakeEventSources();
    const runtime = createRuntime({ appid: 'mp1', token: 'old', baseUrl: base, EventSource: FakeEventSource });
    const heard = [];
    runtime.on('unauthorized', (message) => heard.push(message.message));
    sources[0].emit('unauthorized', { type: 'unauthorized', error: 'unauthorized', message: 'runtime token revoked' });
    assert.deepEqual(heard, ['runtime token revoked']);
    assert.equal(sources[0].closed, true, 'no reconnect with the refused token');
    runtime.token = 'new';
    assert.equal(runtime.connect(), true);
    assert.equal(sources.length, 2);
    assert.match(sources[1].url, /access_token=new&/);
    // the browser gave up on its own (a reconnect refused): connect() opens a new stream at
    // once, without waiting for the runtime's own reopening
    sources[1].readyState = 2;
    sources[1].onerror({});
    runtime.connect();
    assert.equal(sources.length, 3);
    assert.equal(runtime.reconnectTimer, null);
    runtime.close();
  });

  test('a stream the browser gave up on (a proxy\'s 502 while a node restarts) is reopened', async () => {
    const [sources, FakeEventSource] = fakeEventSources();
    const runtime = createRuntime({ appid: 'mp1', token: 't', baseUrl: base, EventSource: FakeEventSource,
      reconnectMs: 5, random: () => 0 });
    runtime.connect();
    const probes = () => seen.filter((r) => r.url === '/runtime/v1/apps/mp1/background-fetch/token'
      && r.headers.authorization === 'Bearer t').length;
    const before = probes();
    sources[0].readyState = 2;
    sources[0].onerror({});
    assert.equal(runtime.source, null);
    assert.equal(runtime.reconnectDelay, 5);
    await until(() => sources.length === 2);
    assert.equal(probes(), before + 1, 'the token was checked before reopening');
    // refused again at once: the wait doubles; reached: it starts over
    sources[1].readyState = 2;
    sources[1].onerror({});
    assert.equal(runtime.reconnectDelay, 10);
    await until(() => sources.length === 3);
    sources[2].emit('connected', { type: 'connected' });
    assert.equal(runtime.reconnectDelay, 0);
    runtime.close();
  });

  test('reopening a refused token tells the host once and stops', async () => {
    const [sources, FakeEventSource] = fakeEventSources();
    const runtime = createRuntime({ appid: 'gone', token: 'old', baseUrl: base, EventSource: FakeEventSource,
      reconnectMs: 1, random: () => 0 });
    const heard = [];
    runtime.on('unauthorized', (message) => heard.push([message.error, message.message]));
    sources[0].readyState = 2;
    sources[0].onerror({});
    await until(() => heard.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 30)); // many waits of 1-2 ms
    assert.deepEqual(heard, [['unauthorized', 'runtime token revoked']]);
    assert.equal(sources.length, 1, 'no stream opened with the refused token');
    runtime.token = 'new';
    runtime.connect();
    assert.equal(sources.length, 2);
    runtime.close();
  });

  test('close() during the wait: nothing is reopened', async () => {
    const [sources, FakeEventSource] = fakeEventSources();
    const runtime = createRuntime({ appid: 'mp1', token: 't', baseUrl: base, EventSource: FakeEventSource,
      reconnectMs: 5, random: () => 0 });
    runtime.connect();
    sources[0].readyState = 2;
    sources[0].onerror({});
    runtime.close();
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.equal(sources.length, 1);
    assert.equal(runtime.reconnectTimer, null);
  });

  test('a runtime needs an appid and a runtime token', () => {
    assert.throws(() => createRuntime({ token: 't' }), /appid is required/);
    assert.throws(() => createRuntime({ appid: 'mp1' }), /token/);
  });
});
