// Dashboards: the chosen dashboard's saved reports run under its date range and drawn in its
// grid order (charts with Chart.js, served by the package, and tables, as the report pages
// draw them); developers create dashboards, add, move and remove reports and set the range.
import { api, el, t } from './console.js';

const root = document.getElementById('dashboards-page');
const appid = root?.dataset.appid ?? '';
const base = `/admin/v1/apps/${encodeURIComponent(appid)}/analytics`;
const data = JSON.parse(document.getElementById('dashboards-data')?.textContent || '{}');
const COLORS = ['#0b8457', '#3867d6', '#e4393c', '#b7791f', '#8e44ad', '#16a085', '#d35400', '#2c3e50'];
const COUNTS = (metric) => ['count', 'users'].includes(metric) || metric.startsWith('distinct:');
const enc = encodeURIComponent;
const charts = [];
const REFRESH_MS = 60_000;

function formatValue(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number' && !Number.isInteger(value)) return value.toFixed(2);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function table(columns, rows, names = {}) {
  // own keys only: a field named "constructor" read Object.prototype's ("function Object()…")
  const head = el('tr', {}, ...columns.map((c) => el('th', { text: Object.hasOwn(names, c) ? names[c] : c })));
  const body = rows.map((row) => el('tr', {}, ...columns.map((c) => el('td', { 'data-col': c, text: formatValue(row[c]) }))));
  if (!rows.length) body.push(el('tr', {}, el('td', { colSpan: columns.length, class: 'muted', text: t('js.rep.no_rows') })));
  return el('div', { class: 'table-wrap' }, el('table', { class: 'table small', 'data-rows': String(rows.length) },
    el('thead', {}, head), el('tbody', {}, ...body)));
}

function chart(type, labels, datasets, counts) {
  const canvas = el('canvas');
  const box = el('div', { class: 'chart-box', 'data-testid': 'dash-chart' }, canvas);
  if (typeof window.Chart !== 'function') return box;
  requestAnimationFrame(() => {
    charts.push(new window.Chart(canvas, {
      type,
      data: {
        labels,
        datasets: datasets.map((d, i) => ({
          borderColor: COLORS[i % COLORS.length],
          backgroundColor: type === 'bar' ? `${COLORS[i % COLORS.length]}cc` : COLORS[i % COLORS.length],
          pointRadius: 3,
          tension: 0,  // straight lines: a curve would invent values between buckets
          ...d,
        })),
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
        scales: { y: { beginAtZero: true, ticks: counts ? { precision: 0 } : {} } },
      },
    }));
    box.dataset.rendered = 'true';
  });
  return box;
}

const pad = (n) => String(n).padStart(2, '0');
const isoDay = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
// metrics that are 0, not unknown, in a bucket without events
const ZERO_WHEN_EMPTY = (metric) => ['count', 'users', 'per_user'].includes(metric) || /^(sum|per_user|distinct):/.test(metric);

/** Every bucket label between the dashboard's dates (day: 2026-11-01, hour: 2026-11-01T13:00). */
function bucketsBetween(from, to, granularity) {
  const out = [];
  const day = new Date(`${from}T00:00:00`);
  const end = new Date(`${to}T00:00:00`);
  for (let guard = 0; day <= end && guard < 400; guard += 1) {
    const label = isoDay(day);
    if (granularity === 'day') out.push(label);
    else for (let h = 0; h < 24; h += 1) out.push(`${label}T${pad(h)}:00`);
    day.setDate(day.getDate() + 1);
  }
  return out.length > 24 * 62 ? [] : out;
}

function drawReport(params, result, board) {
  const rows = result.rows ?? [];
  const metrics = params.metrics ?? ['count'];
  const groups = params.group_by ?? [];
  const groupKey = (row) => groups.map((g) => `${g}=${row[g] ?? '∅'}`).join(', ');
  const counts = metrics.every(COUNTS);
  let drawn;
  if (params.granularity === 'all') {
    drawn = chart('bar', rows.map((r) => groupKey(r) || t('js.rep.all')),
      metrics.map((m) => ({ label: m, data: rows.map((r) => r[m] ?? null) })), counts);
  } else {
    const filled = bucketsBetween(board.from, board.to, params.granularity ?? 'day');
    const labels = [...new Set([...filled, ...rows.map((r) => r.bucket)])].sort();
    const series = new Map();
    for (const row of rows) {
      for (const m of metrics) {
        const key = [m, groupKey(row)].filter(Boolean).join(' · ');
        if (!series.has(key)) series.set(key, { metric: m, values: new Map() });
        series.get(key).values.set(row.bucket, row[m] ?? null);
      }
    }
    drawn = chart('line', labels, [...series.entries()].map(([label, s]) => ({
      label,
      data: labels.map((b) => (s.values.has(b) ? s.values.get(b) : (ZERO_WHEN_EMPTY(s.metric) ? 0 : null))),
    })), counts);
  }
  return [drawn, table(['bucket', ...groups, ...metrics], rows, { bucket: t('js.rep.bucket') })];
}

function drawFunnel(params, result) {
  const rows = result.rows ?? [];
  const group = params.group_by;
  const labels = (params.steps ?? []).map((s, i) => `${i + 1}. ${s.split(':')[0]}`);
  const byGroup = new Map();
  for (const row of rows) {
    const key = group ? `${group}=${row[group] ?? '∅'}` : t('js.rep.all_users');
    if (!byGroup.has(key)) byGroup.set(key, new Array(labels.length).fill(0));
    byGroup.get(key)[row.step - 1] = Math.round(row.users);
  }
  const names = { step: t('js.rep.col.step'), event: t('js.rep.col.event'), users: t('js.rep.col.users'),
    conversion: t('js.rep.col.conversion') };
  const shown = rows.map((r) => ({ ...r, conversion: `${(r.conversion * 100).toFixed(1)}%` }));
  return [chart('bar', labels, [...byGroup.entries()].map(([label, d]) => ({ label, data: d })), true),
    table(['step', 'event', ...(group ? [group] : []), 'users', 'conversion'], shown, names)];
}

function drawAny(result) {
  // a kind without its own drawing: each list of rows as a table
  return Object.entries(result).filter(([, v]) => Array.isArray(v)).map(([key, rows]) => {
    const objects = rows.map((r) => (r && typeof r === 'object' ? r : { value: r }));
    const columns = [...new Set(objects.flatMap((r) => Object.keys(r)))];
    return el('div', {}, el('h4', { text: key }), table(columns, objects));
  });
}

function itemCard(item, count, board) {
  const tools = [];
  if (data.can_edit) {
    const button = (text, testid, action, disabled = false) => {
      const b = el('button', { type: 'button', class: 'small', text, 'data-testid': testid, disabled });
      b.addEventListener('click', action);
      return b;
    };
    tools.push(
      button('↑', 'dash-up', () => change('POST', `/items/${enc(item.report)}/move`, { position: item.position - 1 }), item.position === 0),
      button('↓', 'dash-down', () => change('POST', `/items/${enc(item.report)}/move`, { position: item.position + 1 }), item.position === count - 1),
      button(t('js.dash.remove'), 'dash-remove', () => change('DELETE', `/items/${enc(item.report)}`)),
    );
  }
  let body;
  if (item.error) body = [el('p', { class: 'error-text', 'data-testid': 'dash-item-error', text: item.message })];
  else if (item.kind === 'report') body = drawReport(item.params, item.result, board);
  else if (item.kind === 'funnel') body = drawFunnel(item.params, item.result);
  else body = drawAny(item.result);
  return el('article', { class: `card dash-item w${item.width}`, 'data-report': item.report, 'data-testid': 'dash-item' },
    el('div', { class: 'section-head' }, el('h3', { text: item.report }), el('span', { class: 'muted small', text: t(`js.dash.kind.${item.kind}`) }), ...tools),
    ...body);
}

async function load() {
  const grid = document.querySelector('[data-testid="dash-grid"]');
  const error = document.querySelector('[data-testid="dash-error"]');
  if (!grid || !data.current) return;
  error.textContent = '';
  try {
    const board = await api('POST', `${base}/dashboards/${enc(data.current)}/run`);
    while (charts.length) charts.pop().destroy();
    const range = document.querySelector('[data-testid="dash-range"]');
    range.textContent = t('js.dash.range', { from: board.from, to: board.to, tz: board.tz });
    const days = document.querySelector('[data-testid="dash-range-days"]');
    if (days) days.value = board.range.last_days ?? '';
    grid.replaceChildren(...board.items.map((item) => itemCard(item, board.items.length, board)));
    if (!board.items.length) grid.append(el('p', { class: 'muted', 'data-testid': 'dash-no-items', text: t(data.can_edit ? 'js.dash.no_items' : 'js.dash.no_items_viewer') }));
    grid.dataset.items = String(board.items.length);
    for (const link of document.querySelectorAll('[data-dashboard]')) {
      if (link.dataset.dashboard === board.name) link.textContent = `${board.name} (${board.items.length})`;
    }
    root.dataset.ready = 'true';
  } catch (failure) {
    error.textContent = failure.message;
  }
}

async function change(method, path, body) {
  const error = document.querySelector('[data-testid="dash-error"]');
  try {
    await api(method, `${base}/dashboards/${enc(data.current)}${path}`, body);
    await load();
  } catch (failure) {
    error.textContent = failure.message;
  }
}

function wire() {
  const create = document.getElementById('dash-create');
  create?.addEventListener('submit', async (event) => {
    event.preventDefault();
    const f = create.elements;
    const out = document.querySelector('[data-testid="dash-create-error"]');
    try {
      await api('POST', `${base}/dashboards`, { name: f.name.value.trim(), last_days: Number(f.last_days.value) || 7,
        tz: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC' });
      window.location.search = `?name=${enc(f.name.value.trim())}`;
    } catch (failure) {
      out.textContent = failure.message;
    }
  });
  const add = document.getElementById('dash-add');
  if (add) {
    const select = add.elements.report;
    for (const r of data.reports ?? []) select.append(el('option', { value: r.name, text: `${r.name} (${t(`js.dash.kind.${r.kind}`)})` }));
    if (!(data.reports ?? []).length) select.append(el('option', { value: '', text: t('js.dash.no_saved') }));
    add.addEventListener('submit', (event) => {
      event.preventDefault();
      if (select.value) change('POST', '/items', { report: select.value, width: Number(add.elements.width.value) });
    });
  }
  const range = document.getElementById('dash-range');
  range?.addEventListener('submit', (event) => {
    event.preventDefault();
    change('PUT', '/range', { last_days: Number(range.elements.last_days.value) || 7,
      tz: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC' });
  });
  if (data.current) {
    load();
    // a dashboard refreshes on its own while it is shown
    setInterval(() => { if (document.visibilityState === 'visible') load(); }, REFRESH_MS);
  } else if (root) root.dataset.ready = 'true';
}

if (root) wire();
