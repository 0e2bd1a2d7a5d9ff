// What the JavaScript runtime does with a batch by the platform's answer: the shared table
// (src/miniport/runtime/vectors/report_status.json, which the Python runtime runs too), against
// a server on 127.0.0.1 that answers the first request of each case as the table says and
// accepts every later one.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { createRuntime } from '../../src/miniport/web/sdk/miniport-runtime.js';

const TABLE = JSON.parse(readFileSync(
  new URL('../../src/miniport/runtime/vectors/report_status.json', import.meta.url), 'utf8'));

/** The requests of the current case: their tokens and event ids. @type {{token: string, ids: string[]}[]} */
let seen = [];
/** The first answer of the current case. @type {{status: number, headers: object, body: unknown}} */
let first = { status: 200, headers: {}, body: {} };
let base = '';
let server;

before(async () => {
  server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => { raw += chunk; });
    req.on('end', () => {
      const events = JSON.parse(raw).events;
      seen.push({ token: String(req.headers.authorization), ids: events.map((e) => e.id) });
      const [status, body] = seen.length === 1 ? [first.status, first.body]
        : [200, { accepted: events.length, duplicates: 0, rejected: [] }];
      res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/html' : 'application/json',
        ...(seen.length === 1 ? first.headers : {}) });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((resolve) => {
  server.closeAllConnections?.();
  server.close(resolve);
}));

describe('the platform\'s answer to a batch (the shared table)', () => {
  for (const row of TABLE.cases) {
    const n = row.events ?? 2;
    const told = row.headers?.['Retry-After'] === undefined ? '' : ` (Retry-After: ${row.headers['Retry-After']})`;
    test(`${row.status} ${typeof row.body === 'string' ? 'text' : row.body.error ?? 'verdict'}${told}, ${n} events: ${row.outcome}`, async () => {
      seen = [];
      first = { status: row.status, headers: row.headers ?? {}, body: row.body };
      // the table's runtime: retries after 1 s doubling to 60 s, its random source at 0
      const runtime = createRuntime({
        appid: 'mp1', token: 'rt-token', baseUrl: base, browser: null,
        analytics: { storage: null, target: null, document: null, navigator: null,
          flushIntervalMs: 60_000, retryMs: 1000, maxRetryMs: 60_000, random: () => 0,
          builtinEvents: false },
      });
      const notices = [];
      runtime.analytics.onReport((notice) => notices.push(notice.type));
      for (let i = 0; i < n; i += 1) runtime.wx.reportAnalytics('purchase', { price: i });
      const ids = runtime.analytics.queue.map((e) => e.id);
      await runtime.analytics.flush();
      const queued = runtime.analytics.queue.map((e) => e.id);
      try {
        if (row.outcome === 'sent') {
          assert.deepEqual(seen.map((r) => r.ids), [ids]);
          assert.deepEqual(queued, []);
        } else if (row.outcome === 'kept') {
          assert.deepEqual(seen.map((r) => r.ids), [ids]);
          assert.deepEqual(queued, ids, 'kept for the next try');
          assert.ok(runtime.analytics.retryTimer, 'a retry is scheduled');
          // after the least wait (random source at 0); the delay is the most it could be
          assert.deepEqual([runtime.analytics.retryWait / 1000, runtime.analytics.retryDelay / 1000],
            row.wait_s ?? [0.5, 1]);
          assert.equal(notices.at(-1), 'failed');
          // the host may give a new token meanwhile (a 401 / 403): the next try uses it
          runtime.token = 'rt-token-2';
          await runtime.analytics.flush();
          assert.deepEqual(seen.map((r) => r.ids), [ids, ids], 'the same ids again');
          assert.equal(seen[1].token, 'Bearer rt-token-2');
          assert.deepEqual(runtime.analytics.queue, []);
        } else if (row.outcome === 'dropped') {
          assert.deepEqual(seen.map((r) => r.ids), [ids]);
          assert.deepEqual(queued, [], 'not kept');
          assert.equal(runtime.analytics.retryTimer, null, 'not retried');
          assert.equal(notices.at(-1), 'dropped');
          // what comes after it is not held up
          runtime.wx.reportAnalytics('purchase', { price: 9 });
          const later = runtime.analytics.queue.map((e) => e.id);
          await runtime.analytics.flush();
          assert.deepEqual(seen.map((r) => r.ids), [ids, later]);
          assert.deepEqual(runtime.analytics.queue, []);
        } else if (row.outcome === 'split') {
          assert.deepEqual(seen.map((r) => r.ids), [ids, ids.slice(0, 1), ids.slice(1)],
            'sent again at once, in halves');
          assert.deepEqual(queued, []);
          assert.equal(notices.includes('dropped'), false);
        } else {
          assert.fail(`unknown outcome ${row.outcome}`);
        }
      } finally {
        runtime.analytics.close();
      }
    });
  }
});
