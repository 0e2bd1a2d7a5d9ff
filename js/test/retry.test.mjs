// When the JavaScript runtime sends a kept batch again (src/miniport/web/sdk/analytics.js):
// a doubling delay with jitter, and at least a 429's or 503's Retry-After. Every device whose
// batch failed at the same moment (the event store down) retried after exactly 5, 10, 20 s...
// all together, and Retry-After was not read. The shared cases against a real server are in
// report-status.test.mjs (src/miniport/runtime/vectors/report_status.json), which the Python
// runtime runs too.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { backoff, retryAfterMs } from '../../src/miniport/web/sdk/analytics.js';
import { createRuntime } from '../../src/miniport/web/sdk/miniport-runtime.js';

const at = (value) => () => value;

describe('backoff', () => {
  test('each wait is drawn between half and all of a doubling delay', () => {
    assert.deepEqual(backoff(0, 1000, 60_000, null, at(0)), { delay: 1000, wait: 500 });
    assert.deepEqual(backoff(0, 1000, 60_000, null, at(0.5)), { delay: 1000, wait: 750 });
    assert.deepEqual(backoff(0, 1000, 60_000, null, at(1)), { delay: 1000, wait: 1000 });
    const delays = [];
    let previous = 0;
    for (let i = 0; i < 8; i += 1) {
      const { delay, wait } = backoff(previous, 1000, 60_000, null, at(0.25));
      assert.ok(delay / 2 <= wait && wait <= delay);
      delays.push(delay);
      previous = delay;
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    const herd = new Set(Array.from({ length: 100 }, (_, i) => backoff(8000, 1000, 60_000, null, at(i / 100)).wait));
    assert.equal(herd.size, 100, 'devices that failed together come back spread out');
    assert.equal(Math.min(...herd), 8000);
    assert.ok(Math.max(...herd) < 16_000);
  });

  test('Retry-After is the least wait, capped, and the doubling goes on from it', () => {
    assert.deepEqual(backoff(0, 1000, 60_000, 5000, at(0)), { delay: 10_000, wait: 5000 });
    assert.deepEqual(backoff(0, 1000, 60_000, 5000, at(1)), { delay: 10_000, wait: 10_000 });
    assert.deepEqual(backoff(10_000, 1000, 60_000, null, at(0)), { delay: 20_000, wait: 10_000 });
    assert.deepEqual(backoff(32_000, 1000, 60_000, 5000, at(0)), { delay: 60_000, wait: 30_000 });
    assert.deepEqual(backoff(0, 1000, 60_000, 86_400_000, at(0)), { delay: 60_000, wait: 60_000 });
    assert.deepEqual(backoff(0, 1000, 60_000, Infinity, at(0.9)), { delay: 60_000, wait: 60_000 });
    assert.deepEqual(backoff(0, 1000, 60_000, 45_000, at(0)), { delay: 60_000, wait: 45_000 });
    assert.deepEqual(backoff(0, 1000, 60_000, -3000, at(0)), { delay: 1000, wait: 500 });
  });

  test('Retry-After in either form', () => {
    const date = 'Wed, 21 Oct 2015 07:28:00 GMT';
    assert.equal(retryAfterMs('5', null, 0), 5000);
    assert.equal(retryAfterMs(' 120 ', date, 0), 120_000);
    assert.equal(retryAfterMs('9'.repeat(5000), null, 0), Infinity);
    // an HTTP-date counts from the answer's Date (a phone's clock may be hours off) ...
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:08 GMT', date, 0), 8000);
    // ... else from the device's clock; a date gone by is no wait
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:08 GMT', null, Date.parse(date)), 8000);
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:08 GMT', 'garbage', Date.parse(date)), 8000);
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:08 GMT', null, Date.parse(date) + 10_000), 0);
    for (const unreadable of [null, undefined, '', 'soon', '1.5', '-3', 'Wed, 99 Oct 2015 07:28:08 GMT']) {
      assert.equal(retryAfterMs(unreadable, null, 0), null, String(unreadable));
    }
  });
});

/** A fetch answering every batch from `answer(n)` (n from 1): [status, body, headers]. */
function server(answer) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push(JSON.parse(init.body).events.map((e) => e.id));
    const [status, body, headers = {}] = answer(calls.length);
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
  };
  return { fetch, calls };
}

const UNAVAILABLE = { error: 'analytics_unavailable', message: 'ClickHouse cannot be reached' };

function runtimeWith(fetch, analytics) {
  return createRuntime({
    appid: 'mp1', token: 'rt-token', baseUrl: 'http://127.0.0.1:9', fetch, browser: null,
    analytics: { storage: null, target: null, document: null, navigator: null, flushIntervalMs: 60_000,
      builtinEvents: false, ...analytics },
  });
}

describe('the retry of a kept batch', () => {
  test('waits at least Retry-After: no sooner timer, flush interval or new report', async () => {
    const platform = server(() => [503, UNAVAILABLE, { 'Retry-After': '30' }]);
    const runtime = runtimeWith(platform.fetch, { retryMs: 20, flushIntervalMs: 20, batchSize: 1, random: at(0) });
    try {
      runtime.wx.reportAnalytics('purchase', { price: 1 });
      await runtime.analytics.flush();
      assert.equal(runtime.analytics.retryWait, 30_000);
      assert.equal(runtime.analytics.retryDelay, 60_000);
      runtime.wx.reportAnalytics('purchase', { price: 2 }); // a full batch waits for the retry too
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(platform.calls.length, 1, 'asked for 30 s of quiet: nothing sent meanwhile');
    } finally {
      runtime.analytics.close();
    }
  });

  test('each device draws its own wait; the doubling goes on after Retry-After', async () => {
    const waits = [];
    for (const share of [0, 0.5, 0.999]) {
      const platform = server(() => [502, { error: 'bad_gateway', message: 'bad gateway' }]);
      const runtime = runtimeWith(platform.fetch, { retryMs: 30_000, random: at(share) });
      try {
        runtime.wx.reportAnalytics('purchase', {});
        await runtime.analytics.flush();
        assert.equal(runtime.analytics.retryDelay, 30_000);
        waits.push(runtime.analytics.retryWait);
      } finally {
        runtime.analytics.close();
      }
    }
    assert.deepEqual(waits.map((w) => Math.round(w * 1000) / 1000), [15_000, 22_500, 29_985]);

    // 503 Retry-After: 4, then a network failure, then a 429 asking for more than the longest delay
    const answers = [[503, UNAVAILABLE, { 'Retry-After': '4' }], 'network', [429, {}, { 'Retry-After': '3600' }]];
    let n = 0;
    const fetch = async () => {
      const answer = answers[n++];
      if (answer === 'network') throw new TypeError('fetch failed');
      return new Response(JSON.stringify(answer[1]), { status: answer[0], headers: answer[2] });
    };
    const runtime = runtimeWith(fetch, { retryMs: 1000, maxRetryMs: 60_000, random: at(0) });
    try {
      runtime.wx.reportAnalytics('purchase', {});
      const seen = [];
      for (let i = 0; i < 3; i += 1) {
        await runtime.analytics.flush();
        seen.push([runtime.analytics.retryWait, runtime.analytics.retryDelay]);
        clearTimeout(runtime.analytics.retryTimer); // the next try now, not after the wait
        runtime.analytics.retryTimer = null;
      }
      assert.deepEqual(seen, [[4000, 8000], [8000, 16_000], [60_000, 60_000]]);
      assert.equal(runtime.analytics.queue.length, 1, 'kept throughout, the same event');
    } finally {
      runtime.analytics.close();
    }
  });

  test('a reconnect does not cut short the Retry-After the platform asked for', async () => {
    // a node restarting: every device it served reconnects at once; sending at once too made
    // the burst its 503's Retry-After was there to spread
    let now = 1_000_000;
    const platform = server(() => [503, UNAVAILABLE, { 'Retry-After': '30' }]);
    const runtime = runtimeWith(platform.fetch, { retryMs: 1000, random: at(0), now: () => now });
    try {
      runtime.wx.reportAnalytics('purchase', {});
      await runtime.analytics.flush();
      assert.equal(runtime.analytics.retryWait, 30_000);
      runtime.analytics.networkOk(true); // the event stream reconnected
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(platform.calls.length, 1, 'nothing sent before the Retry-After is over');
      now += 30_001;
      runtime.analytics.networkOk(true);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(platform.calls.length, 2, 'once it is over, a reconnect sends at once');
    } finally {
      runtime.analytics.close();
    }
  });

  test('a success, or the network coming back, starts the backoff again from retryMs', async () => {
    let fail = true;
    const platform = server(() => (fail ? [502, { error: 'bad_gateway', message: 'bad gateway' }]
      : [200, { accepted: 1, duplicates: 0, rejected: [] }]));
    const runtime = runtimeWith(platform.fetch, { retryMs: 1000, random: at(0) });
    try {
      runtime.wx.reportAnalytics('purchase', {});
      await runtime.analytics.flush();
      clearTimeout(runtime.analytics.retryTimer); // the retry now, not after its wait
      runtime.analytics.retryTimer = null;
      await runtime.analytics.flush();
      assert.equal(runtime.analytics.retryDelay, 2000, 'doubled');
      fail = false;
      runtime.analytics.networkOk(true); // the event stream reconnected: send now
      await runtime.analytics.flush();
      assert.deepEqual([runtime.analytics.retryDelay, runtime.analytics.retryWait, runtime.analytics.queue.length], [0, 0, 0]);
      fail = true;
      runtime.wx.reportAnalytics('purchase', {});
      platform.calls.length = 0;
      await runtime.analytics.flush();
      assert.equal(runtime.analytics.retryDelay, 1000, 'from the first delay again');
    } finally {
      runtime.analytics.close();
    }
  });
});
