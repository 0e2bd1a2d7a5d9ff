// Runs every shared vector (src/miniport/analytics/vectors/*.json) through the JS evaluator.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { Evaluator, normalizePage, parseSelector, parseSource } from '../../src/miniport/web/sdk/evaluator.js';

const VECTORS = new URL('../../src/miniport/analytics/vectors/', import.meta.url);

/** The evaluator method and its arguments for one vector call. */
const CALLS = {
  launch: (c) => ['launch', c.t],
  background: (c) => ['background', c.t],
  foreground: (c) => ['foreground', c.t],
  share: (c) => ['share', c.t, c.page ?? null],
  page_load: (c) => ['pageLoad', c.t, c.page, c.data ?? null],
  page_show: (c) => ['pageShow', c.t, c.page],
  page_hide: (c) => ['pageHide', c.t, c.page],
  page_unload: (c) => ['pageUnload', c.t, c.page],
  set_data: (c) => ['setData', c.t, c.page, c.data],
  set_app_data: (c) => ['setAppData', c.t, c.data],
  click: (c) => ['click', c.t, c.page, c.element ?? null],
  switch_tab: (c) => ['switchTab', c.t, c.page],
  pull_down_refresh: (c) => ['pullDownRefresh', c.t, c.page],
  set_config: (c) => ['setConfig', c.config],
};

/** Run a vector's calls; returns the concatenation of what every call emitted. */
function run(vector) {
  const evaluator = new Evaluator(vector.config, vector.app_data ?? null);
  const emitted = [];
  for (const call of vector.calls) {
    const make = CALLS[call.call];
    assert.ok(make, `unknown call ${call.call}`);
    const [method, ...args] = make(call);
    emitted.push(...(evaluator[method](...args) ?? []));
  }
  return emitted;
}

const files = readdirSync(VECTORS).filter((name) => name.endsWith('.json')).sort();
const names = new Set();

for (const file of files) {
  const { vectors } = JSON.parse(readFileSync(new URL(file, VECTORS), 'utf8'));
  describe(file, () => {
    for (const vector of vectors) {
      test(vector.name, () => {
        assert.ok(!names.has(vector.name), `duplicate vector name ${vector.name}`);
        names.add(vector.name);
        assert.deepEqual(run(vector), vector.expected);
      });
    }
  });
}

describe('helpers', () => {
  test('at least 40 vectors', () => {
    const count = files
      .map((file) => JSON.parse(readFileSync(new URL(file, VECTORS), 'utf8')).vectors.length)
      .reduce((a, b) => a + b, 0);
    assert.ok(count >= 40, `only ${count} vectors`);
  });

  test('normalizePage', () => {
    assert.equal(normalizePage('/pages/a/a?x=1'), 'pages/a/a');
    assert.equal(normalizePage('//pages/a/a'), '/pages/a/a');
    assert.equal(normalizePage('pages/a/a'), 'pages/a/a');
  });

  test('parseSelector', () => {
    assert.deepEqual(parseSelector('.buy'), { kind: 'class', name: 'buy' });
    assert.deepEqual(parseSelector('#buy-1'), { kind: 'id', name: 'buy-1' });
    for (const bad of ['', '.', '#', 'buy', '.a.b', '.a .b', ' .a', '.a\n', 'view.a', 3, null]) {
      assert.equal(parseSelector(bad), null, String(bad));
    }
  });

  test('parseSource', () => {
    assert.deepEqual(parseSource('a[][].b').steps, ['a', 0, 1, 'b']);
    assert.equal(parseSource('a[][].$INDEX').level, 1);
    assert.equal(parseSource('$APP.a.b').key, 'a.b');
    for (const bad of ['', 'a..b', '$X', '$INDEX', 'a.$INDEX', 'a[0]', 'a[]x', '[].a', 'a.$b']) {
      assert.equal(parseSource(bad), null, bad);
    }
  });
});
