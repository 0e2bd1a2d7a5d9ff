// Sessions and built-in events: the shared vectors (the Python runtime runs the same ones), and
// the Analytics reporter's use of them (context on events and batches, the on/off switches).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { createRuntime, Lifecycle, queryString } from '../../src/miniport/web/sdk/miniport-runtime.js';

const VECTORS = JSON.parse(readFileSync(new URL('../../src/miniport/runtime/vectors/lifecycle.json', import.meta.url), 'utf8'));

/** Run one vector case; returns what it made, in the vectors' shape. */
function run(steps, timeoutMs) {
  let n = 0;
  const lc = new Lifecycle({ makeId: () => `s${(n += 1)}`, timeoutMs });
  const out = [];
  const record = (events) => {
    for (const ev of events) {
      const ctx = lc.context(ev.t);
      out.push({ event: ev.event, t: ev.t, data: ev.data, page: ev.page, session: ctx.$session, scene: ctx.$scene ?? null });
    }
  };
  for (const step of steps) {
    if (step.call === 'launch') record(lc.launch(step.t, { path: step.path, query: step.query, scene: step.scene }));
    else if (step.call === 'show') record(lc.show(step.t));
    else if (step.call === 'hide') record(lc.hide(step.t));
    else if (step.call === 'pageLoad') lc.pageLoad(step.path, step.query);
    else if (step.call === 'pageShow') record(lc.pageShow(step.t, step.path, step.query));
    else if (step.call === 'pageLeave') record(lc.pageLeave(step.t, step.path));
    else if (step.call === 'context') {
      const ctx = lc.context(step.t);
      out.push({ event: '(context)', t: step.t, data: {}, page: null, session: ctx.$session, scene: ctx.$scene ?? null });
    } else throw new Error(`unknown step ${step.call}`);
  }
  return out;
}

describe('lifecycle vectors (shared with the Python runtime)', () => {
  for (const vector of VECTORS.cases) {
    test(vector.name, () => {
      assert.deepEqual(run(vector.steps, VECTORS.timeout_ms), vector.expect);
    });
  }
  test('query objects in WeChat\'s string form, as the Python runtime writes them', () => {
    for (const { query, string } of VECTORS.query_strings) assert.equal(queryString(query), string);
  });
});

/** A fetch that records the analytics batches and accepts them. */
function recorder() {
  const batches = [];
  const fetch = async (url, init) => {
    const body = init?.body ? JSON.parse(init.body) : null;
    if (String(url).endsWith('/analytics/events')) batches.push(body);
    const answer = body?.events ? { accepted: body.events.length, duplicates: 0, rejected: [] } : { events: [] };
    return new Response(JSON.stringify(answer), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
  return { fetch, batches };
}

function runtimeWith(fetch, { system, clock, ...analytics } = {}) {
  let n = 0;
  return createRuntime({
    appid: 'mp1', token: 'rt', baseUrl: 'http://127.0.0.1:9', fetch, browser: null, system,
    analytics: { storage: null, target: null, document: null, navigator: null, flushIntervalMs: 60_000,
      makeId: () => `id${(n += 1)}`, now: () => clock?.() ?? 0, ...analytics },
  });
}

const SYSTEM = { $platform: 'ios', $os_version: '17.2', $brand: 'Apple', $model: 'iPhone 15', $mp_version: '1.2.0',
  $env: 'release', $network: 'wifi', $language: 'zh_CN', $screen: '393x852', $host_version: '8.0.50' };

describe('built-in events and context in what the runtime sends', () => {
  test('a batch carries the host\'s system properties, the session and scene; each event its own', async () => {
    const { fetch, batches } = recorder();
    let now = 1_700_000_000_000;
    const rt = runtimeWith(fetch, { system: SYSTEM, clock: () => now });
    const a = rt.analytics;
    a.launch(now, { path: 'pages/index/index', query: { from: 'share' }, scene: 1007 });
    a.pageShow(now, 'pages/index/index');
    now += 4000;
    rt.wx.reportAnalytics('purchase', { price: 5 });
    a.pageHide(now, 'pages/index/index');
    a.background(now);
    await a.flush();
    assert.equal(batches.length, 1);
    const [batch] = batches;
    const session = batch.context.$session;
    assert.deepEqual(batch.context, { ...SYSTEM, $sdk_version: '0.1.0', $session: session, $scene: 1007 });
    assert.deepEqual(batch.events.map((e) => [e.event, e.data, e.context]), [
      ['$launch', { cold: true, path: 'pages/index/index', query: 'from=share' }, { $session: session, $scene: 1007 }],
      ['$show', {}, { $session: session, $scene: 1007 }],
      ['$pageview', { path: 'pages/index/index', query: 'from=share', referrer: '' }, { $session: session, $scene: 1007 }],
      ['purchase', { price: 5 }, { $session: session, $scene: 1007 }],
      ['$pageleave', { path: 'pages/index/index', duration_ms: 4000 }, { $session: session, $scene: 1007 }],
      ['$hide', {}, { $session: session, $scene: 1007 }],
    ]);
    assert.deepEqual(batch.events.map((e) => [e.trigger, e.action]).filter(([t, x]) => t !== null || x !== null), []);
    a.close();
  });

  test('events queued in one session keep it when sent after a new one began', async () => {
    const { fetch, batches } = recorder();
    let now = 0;
    const rt = runtimeWith(fetch, { clock: () => now });
    const a = rt.analytics;
    a.launch(now, { scene: 1001 });
    rt.wx.reportAnalytics('early', {});
    a.background(now);
    now += 31 * 60 * 1000;
    a.foreground(now);
    rt.wx.reportAnalytics('late', {});
    await a.flush();
    const events = batches[0].events;
    const early = events.find((e) => e.event === 'early').context.$session;
    const late = events.find((e) => e.event === 'late').context.$session;
    assert.notEqual(early, late);
    assert.equal(batches[0].context.$session, late, 'the batch says the session now');
    a.close();
  });

  test('the builtinEvents option turns them off; the session is kept', async () => {
    const { fetch, batches } = recorder();
    const rt = runtimeWith(fetch, { builtinEvents: false });
    rt.analytics.launch(0, { path: 'p', scene: 1001 });
    rt.analytics.pageShow(0, 'p');
    rt.wx.reportAnalytics('purchase', {});
    await rt.analytics.flush();
    assert.deepEqual(batches[0].events.map((e) => e.event), ['purchase']);
    assert.equal(batches[0].events[0].context.$scene, 1001);
    rt.analytics.close();
  });

  test('the app\'s configuration turns them off ("builtin_events": false) and on again', () => {
    const rt = runtimeWith(recorder().fetch);
    const a = rt.analytics;
    a.setConfig({ version: 3, events: [], fields: [], builtin_events: false });
    a.launch(0, { path: 'p' });
    assert.deepEqual(a.queue, []);
    a.setConfig({ version: 4, events: [], fields: [] });
    a.pageShow(10, 'p');
    assert.deepEqual(a.queue.map((e) => e.event), ['$pageview']);
    a.close();
  });
});
