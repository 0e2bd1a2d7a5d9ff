// Analytics reports: event analysis (metrics, group-bys, filters, granularity, dates, time zone)
// and funnels through the admin API, drawn with Chart.js (served by the package) and as tables;
// the CSV export link follows the form.
import { api, el, formatTime, t } from './console.js';

const root = document.getElementById('reports-page');
const appid = root?.dataset.appid ?? '';
const base = `/admin/v1/apps/${encodeURIComponent(appid)}/analytics`;
const data = JSON.parse(document.getElementById('reports-data')?.textContent || '{}');
const definitions = data.definitions ?? { fields: [], events: [] };
const MAX_METRICS = 5;
const MAX_GROUPS = 5;
const MAX_FILTERS = 5;
const MAX_STEPS = 10;
const BUILTINS = ['page', 'trigger'];
const OPS = ['=', '!=', '>', '>=', '<', '<='];
const COLORS = ['#0b8457', '#3867d6', '#e4393c', '#b7791f', '#8e44ad', '#16a085', '#d35400', '#2c3e50'];
const charts = {};

// system properties ($platform, $scene...) and built-in events ($launch...): no definition,
// usable in every report; the built-in events' data are their "fields" ($path, $duration_ms...)
const system = data.system ?? { properties: [], events: {}, kinds: {} };
const fieldTypes = {
  ...Object.fromEntries(definitions.fields.map((f) => [f.name, f.type])),
  ...system.kinds,
};
const events = [
  ...definitions.events
    .map((e) => ({ name: e.name, def: e.draft ?? e.published ?? {} }))
    .map((e) => ({ name: e.name, display: e.def.display_name ?? e.name, fields: e.def.fields ?? [] })),
  ...Object.entries(system.events).map(([name, fields]) => ({ name, display: t('js.rep.builtin_event'), fields })),
];

const pad = (n) => String(n).padStart(2, '0');
const isoDay = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

function option(value, label, selected = false) {
  const node = el('option', { value, text: label });
  if (selected) node.selected = true;
  return node;
}

function fieldsOf(eventName) {
  return events.find((e) => e.name === eventName)?.fields ?? [];
}

function removable(row, container, min = 0) {
  const remove = el('button', { type: 'button', class: 'small', text: '✕', title: t('js.rep.remove') });
  remove.addEventListener('click', () => {
    if (container.children.length > min) row.remove();
    updateButtons();
  });
  row.append(remove);
  return row;
}

// --- event analysis ----------------------------------------------------------------------

const form = document.getElementById('report-form');
const metricsBox = form?.querySelector('.metrics');
const groupsBox = form?.querySelector('.groups');
const filtersBox = form?.querySelector('.filters');

function metricChoices(eventName) {
  const out = [['count', t('js.rep.metric.count')], ['users', t('js.rep.metric.users')], ['per_user', t('js.rep.metric.per_user')]];
  for (const field of fieldsOf(eventName)) {
    if (fieldTypes[field] === 'int' || fieldTypes[field] === 'float') {
      for (const kind of ['sum', 'max', 'min', 'avg', 'per_user']) out.push([`${kind}:${field}`, t(`js.rep.metric.${kind}_f`, { field })]);
    } else if (fieldTypes[field] === 'string') {
      out.push([`distinct:${field}`, t('js.rep.metric.distinct_f', { field })]);
    }
  }
  return out;
}

function dimensionChoices(eventName) {
  const own = fieldsOf(eventName);
  return [...own, ...BUILTINS.filter((b) => !own.includes(b)), ...system.properties];
}

function metricRow(value = 'count') {
  const select = el('select', { name: 'metric', 'aria-label': t('js.rep.metric') });
  for (const [key, label] of metricChoices(form.elements.event.value)) select.append(option(key, label, key === value));
  return removable(el('div', { class: 'row metric-row' }, select), metricsBox, 1);
}

function groupRow(value = '') {
  const select = el('select', { name: 'group', 'aria-label': t('js.rep.group') });
  for (const name of dimensionChoices(form.elements.event.value)) select.append(option(name, name, name === value));
  return removable(el('div', { class: 'row group-row' }, select), groupsBox);
}

function filterRow(field = '', op = '=', value = '') {
  const select = el('select', { name: 'filter_field', 'aria-label': t('js.rep.field') });
  for (const name of dimensionChoices(form.elements.event.value)) select.append(option(name, name, name === field));
  const ops = el('select', { name: 'filter_op', 'aria-label': t('js.rep.op') });
  for (const o of OPS) ops.append(option(o, o, o === op));
  const text = el('input', { name: 'filter_value', value, 'aria-label': t('js.rep.value'), maxLength: 255 });
  return removable(el('div', { class: 'row filter-row' }, select, ops, text), filtersBox);
}

function updateButtons() {
  if (!form) return;
  form.querySelector('.add-metric').disabled = metricsBox.children.length >= MAX_METRICS;
  form.querySelector('.add-group').disabled = groupsBox.children.length >= MAX_GROUPS;
  form.querySelector('.add-filter').disabled = filtersBox.children.length >= MAX_FILTERS;
  const funnelForm = document.getElementById('funnel-form');
  if (funnelForm) funnelForm.querySelector('.add-step').disabled = funnelForm.querySelector('.steps').children.length >= MAX_STEPS;
}

/** Re-make the metric / group / filter choices for the chosen event (keeping what still fits). */
function onEventChange() {
  // an event is chosen: the "choose an event" messages go (until a report replaces them)
  const error = document.querySelector('[data-testid="rep-error"]');
  if (error.textContent === t('js.rep.pick_event')) error.textContent = '';
  const table = document.querySelector('[data-testid="rep-table"]');
  if (!table.dataset.rows && form.elements.event.value) {
    table.querySelector('tbody').replaceChildren(el('tr', {}, el('td', { class: 'muted', text: t('js.rep.ready') })));
  }
  const metrics = [...metricsBox.querySelectorAll('[name=metric]')].map((s) => s.value);
  const groups = [...groupsBox.querySelectorAll('[name=group]')].map((s) => s.value);
  const filters = [...filtersBox.querySelectorAll('.filter-row')].map((row) => [
    row.querySelector('[name=filter_field]').value, row.querySelector('[name=filter_op]').value,
    row.querySelector('[name=filter_value]').value]);
  const allowed = new Set(metricChoices(form.elements.event.value).map(([key]) => key));
  const dims = new Set(dimensionChoices(form.elements.event.value));
  const keptMetrics = metrics.filter((m) => allowed.has(m));
  metricsBox.replaceChildren(...(keptMetrics.length ? keptMetrics : ['count']).map((m) => metricRow(m)));
  groupsBox.replaceChildren(...groups.filter((g) => dims.has(g)).map((g) => groupRow(g)));
  filtersBox.replaceChildren(...filters.filter(([f]) => dims.has(f)).map((f) => filterRow(...f)));
  updateButtons();
  updateCsv();
}

function reportBody() {
  const f = form.elements;
  return {
    event: f.event.value,
    metrics: [...metricsBox.querySelectorAll('[name=metric]')].map((s) => s.value),
    group_by: [...groupsBox.querySelectorAll('[name=group]')].map((s) => s.value),
    filters: [...filtersBox.querySelectorAll('.filter-row')].map((row) => `${row.querySelector('[name=filter_field]').value}`
      + `${row.querySelector('[name=filter_op]').value}${row.querySelector('[name=filter_value]').value}`),
    any: form.querySelector('input[name=any]:checked')?.value === 'true',
    granularity: f.granularity.value,
    from: f.from.value || null,
    to: f.to.value || null,
    tz: f.tz.value.trim() || 'UTC',
  };
}

function updateCsv() {
  const link = document.querySelector('[data-testid="csv-link"]');
  if (!link || !form) return;
  const f = form.elements;
  const params = new URLSearchParams({ event: f.event.value, tz: f.tz.value.trim() || 'UTC' });
  if (f.from.value) params.set('from', f.from.value);
  if (f.to.value) params.set('to', f.to.value);
  link.href = `${base}/export?${params}`;
  link.classList.toggle('disabled', !f.event.value);
}

/** Every bucket label between the dates (day: 2026-11-01, hour: 2026-11-01T13:00). */
function bucketsBetween(from, to, granularity) {
  if (!from || !to || granularity === 'all') return [];
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

// counts (events, users, distinct values) are whole numbers: integer ticks on their axis
const COUNTS = (metric) => ['count', 'users'].includes(metric) || metric.startsWith('distinct:');

function chartOn(id, type, labels, datasets, { yTitle = '', counts = false } = {}) {
  const canvas = document.getElementById(id);
  if (!canvas || typeof window.Chart !== 'function') return null;
  if (charts[id] && charts[id].config.type !== type) {
    charts[id].destroy();
    delete charts[id];
  }
  if (!charts[id]) {
    charts[id] = new window.Chart(canvas, {
      type,
      data: { labels: [], datasets: [] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
        scales: { y: { beginAtZero: true, title: { display: Boolean(yTitle), text: yTitle } }, x: { ticks: { autoSkip: true, maxTicksLimit: 12 } } },
      },
    });
  }
  const chart = charts[id];
  chart.options.scales.y.ticks = counts ? { precision: 0 } : {};
  chart.data.labels = labels;
  chart.data.datasets = datasets.map((d, i) => ({
    borderColor: COLORS[i % COLORS.length],
    backgroundColor: type === 'bar' ? `${COLORS[i % COLORS.length]}cc` : COLORS[i % COLORS.length],
    pointRadius: 3,
    tension: 0,  // straight lines: a curve would invent values between buckets
    ...d,
  }));
  chart.update();
  canvas.closest('.chart-box').dataset.rendered = 'true';
  canvas.closest('.chart-box').dataset.points = String(datasets.reduce((n, d) => n + d.data.filter((v) => v !== null).length, 0));
  return chart;
}

const ZERO_WHEN_EMPTY = (metric) => ['count', 'users', 'per_user'].includes(metric) || /^(sum|per_user|distinct):/.test(metric);

/**
 * Under a report: for each field whose type changed, which part of the data used which type
 * and how the report read it (`field_types` of the answer; see analytics.field_history).
 */
function drawFieldTypes(testid, types, metrics = []) {
  const list = document.querySelector(`[data-testid="${testid}"]`);
  if (!list) return;
  const when = (ms, open) => (ms === null || ms === undefined ? t(open) : formatTime(ms, { ms: true }));
  list.replaceChildren(...Object.entries(types ?? {}).map(([name, info]) => {
    const parts = info.parts.map((p) => el('li', { 'data-read': p.read, text: t(`js.rep.part_${p.read}`, {
      type: p.type, column: p.column, from: when(p.from_ms, 'js.rep.since_start'), to: when(p.to_ms, 'js.rep.until_now'), now: info.type,
    }) }));
    const apart = [...new Set(info.parts.filter((p) => p.read === 'apart').map((p) => p.type))];
    const metricNotes = apart.length ? metrics.filter((m) => m.split(':')[1] === name).map((m) => el('li', {
      class: 'metric-note', text: t('js.rep.metric_part_only', { metric: m, type: info.type, other: apart.join(', ') }),
    })) : [];
    return el('li', { 'data-field': name }, el('strong', { text: t('js.rep.field_retyped', { name, type: info.type }) }),
      el('ul', {}, ...parts, ...metricNotes));
  }));
  list.classList.toggle('hidden', !list.children.length);
}

function drawReport(body, rows) {
  const typed = (g, row) => (row[`${g}@type`] ? ` (${row[`${g}@type`]})` : '');
  const groupKey = (row) => body.group_by.map((g) => `${g}=${row[g] ?? '∅'}${typed(g, row)}`).join(', ');
  if (body.granularity === 'all') {
    const labels = rows.map((row) => groupKey(row) || t('js.rep.all'));
    chartOn('report-chart', 'bar', labels, body.metrics.map((m) => ({ label: m, data: rows.map((row) => row[m] ?? null) })),
      { counts: body.metrics.every(COUNTS) });
  } else {
    const filled = bucketsBetween(body.from, body.to, body.granularity);
    const labels = [...new Set([...filled, ...rows.map((row) => row.bucket)])].sort();
    const series = new Map();
    for (const row of rows) {
      for (const metric of body.metrics) {
        const key = [metric, groupKey(row)].filter(Boolean).join(' · ');
        if (!series.has(key)) series.set(key, { metric, values: new Map() });
        series.get(key).values.set(row.bucket, row[metric] ?? null);
      }
    }
    const datasets = [...series.entries()].map(([label, s]) => ({
      label,
      data: labels.map((b) => (s.values.has(b) ? s.values.get(b) : (ZERO_WHEN_EMPTY(s.metric) ? 0 : null))),
    }));
    chartOn('report-chart', 'line', labels, datasets, { counts: body.metrics.every(COUNTS) });
  }
  const table = document.querySelector('[data-testid="rep-table"]');
  const typeColumns = body.group_by.map((g) => `${g}@type`).filter((c) => rows.some((row) => c in row));
  const columns = ['bucket', ...body.group_by, ...typeColumns, ...body.metrics];
  table.querySelector('thead').replaceChildren(el('tr', {}, ...columns.map((c) => el('th', { text: c === 'bucket' ? t('js.rep.bucket') : typeColumns.includes(c) ? t('js.rep.type_col', { name: c.slice(0, -5) }) : c }))));
  const tbody = table.querySelector('tbody');
  tbody.replaceChildren(...rows.map((row) => el('tr', { 'data-bucket': String(row.bucket) },
    ...columns.map((c) => el('td', { 'data-col': c, text: formatValue(row[c]) })))));
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colSpan: columns.length, class: 'muted', text: t('js.rep.no_rows') })));
  table.dataset.rows = String(rows.length);
}

function formatValue(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'number' && !Number.isInteger(value)) return value.toFixed(2);
  return String(value);
}

async function runReport(event) {
  event?.preventDefault();
  const error = document.querySelector('[data-testid="rep-error"]');
  error.textContent = '';
  const body = reportBody();
  if (!body.event) {
    error.textContent = t('js.rep.pick_event');
    return;
  }
  try {
    const { rows, field_types: types } = await api('POST', `${base}/report`, body);
    drawReport(body, rows);
    drawFieldTypes('rep-field-types', types, body.metrics);
  } catch (failure) {
    error.textContent = failure.message;
  }
}

// --- funnels ---------------------------------------------------------------------------------

const funnelForm = document.getElementById('funnel-form');
const stepsBox = funnelForm?.querySelector('.steps');

function stepRow(eventName = '', filters = '') {
  const select = el('select', { name: 'step_event', 'aria-label': t('js.rep.step_event') });
  for (const e of events) select.append(option(e.name, `${e.name} (${e.display})`, e.name === eventName));
  select.addEventListener('change', fillFunnelGroups);
  const text = el('input', { name: 'step_filters', value: filters, placeholder: 'price>=10;color=red', 'aria-label': t('js.rep.step_filters'), maxLength: 512 });
  const row = el('div', { class: 'row step-row' }, el('span', { class: 'step-n' }), select, text);
  return removable(row, stepsBox, 2);
}

function numberSteps() {
  [...stepsBox.children].forEach((row, i) => {
    row.querySelector('.step-n').textContent = `${i + 1}.`;
  });
}

function fillFunnelGroups() {
  const select = funnelForm.elements.group_by;
  const current = select.value;
  const first = stepsBox.querySelector('[name=step_event]')?.value ?? '';
  select.replaceChildren(option('', t('js.rep.no_group')), ...dimensionChoices(first).map((d) => option(d, d, d === current)));
  numberSteps();
}

function funnelBody() {
  const f = funnelForm.elements;
  const steps = [...stepsBox.querySelectorAll('.step-row')].map((row) => {
    const name = row.querySelector('[name=step_event]').value;
    const filters = row.querySelector('[name=step_filters]').value.trim();
    return filters ? `${name}:${filters}` : name;
  });
  return { steps, group_by: f.group_by.value || null, from: f.from.value || null, to: f.to.value || null,
    tz: form.elements.tz.value.trim() || 'UTC', window: f.window.value || null, order: f.order.value || null };
}

async function runFunnel(event) {
  event?.preventDefault();
  const error = document.querySelector('[data-testid="funnel-error"]');
  error.textContent = '';
  const body = funnelBody();
  try {
    const { rows, field_types: types } = await api('POST', `${base}/funnel`, body);
    drawFunnel(body, rows);
    drawFieldTypes('funnel-field-types', types);
  } catch (failure) {
    error.textContent = failure.message;
  }
}

function formatDuration(seconds) {
  // the median time between steps, in the largest unit that keeps it readable
  if (seconds === null || seconds === undefined) return '–';
  const units = [[86400, 'js.rep.dur_d'], [3600, 'js.rep.dur_h'], [60, 'js.rep.dur_min']];
  for (const [size, key] of units) {
    if (seconds >= size) return t(key, { n: Number((seconds / size).toFixed(1)) });
  }
  return t('js.rep.dur_s', { n: Number(seconds.toFixed(1)) });
}

function funnelCell(column, row) {
  if (column === 'conversion' || column === 'step_conversion') return `${(row[column] * 100).toFixed(1)}%`;
  if (column === 'median_s') return formatDuration(row.median_s);
  return formatValue(row[column]);
}

function drawFunnel(body, rows) {
  const group = body.group_by;
  const labels = body.steps.map((s, i) => `${i + 1}. ${s.split(':')[0]}`);
  const byGroup = new Map();
  for (const row of rows) {
    const key = group ? `${group}=${row[group] ?? '∅'}` : t('js.rep.all_users');
    if (!byGroup.has(key)) byGroup.set(key, new Array(labels.length).fill(0));
    byGroup.get(key)[row.step - 1] = Math.round(row.users);  // whole users
  }
  chartOn('funnel-chart', 'bar', labels, [...byGroup.entries()].map(([label, values]) => ({ label, data: values })),
    { yTitle: t('js.rep.users'), counts: true });
  const table = document.querySelector('[data-testid="funnel-table"]');
  const columns = ['step', 'event', ...(group ? [group] : []), 'users', 'conversion', 'step_conversion',
    'drop_off', 'median_s'];
  const names = { step: t('js.rep.col.step'), event: t('js.rep.col.event'), users: t('js.rep.col.users'),
    conversion: t('js.rep.col.conversion'), step_conversion: t('js.rep.col.step_conversion'),
    drop_off: t('js.rep.col.drop_off'), median_s: t('js.rep.col.median_s') };
  table.querySelector('thead').replaceChildren(el('tr', {}, ...columns.map((c) => el('th', { text: Object.hasOwn(names, c) ? names[c] : c }))));
  const tbody = table.querySelector('tbody');
  tbody.replaceChildren(...rows.map((row) => el('tr', { 'data-step': String(row.step) }, ...columns.map((c) => el('td', {
    'data-col': c,
    text: funnelCell(c, row),
    ...(c === 'median_s' && row.median_s !== null ? { title: `${row.median_s} s`, 'data-seconds': String(row.median_s) } : {}),
  })))));
  if (!rows.length) tbody.append(el('tr', {}, el('td', { colSpan: columns.length, class: 'muted', text: t('js.rep.no_rows') })));
  table.dataset.rows = String(rows.length);
}

// --- save a report with its parameters (for dashboards) ----------------------------------------

async function saveReport(box) {
  const kind = box.dataset.kind;
  const out = box.querySelector('.save-out');
  const name = box.querySelector('[name=save_name]').value.trim();
  out.className = 'small save-out';
  if (!name) {
    out.textContent = t('js.rep.save_name_needed');
    out.classList.add('error-text');
    return;
  }
  try {
    await api('POST', `${base}/saved`, { name, kind, params: kind === 'report' ? reportBody() : funnelBody() });
    out.replaceChildren(t('js.rep.saved', { name }), ' ',
      el('a', { href: `/console/apps/${encodeURIComponent(appid)}/analytics/dashboards`, text: t('js.rep.to_dashboards') }));
    out.dataset.saved = name;
  } catch (failure) {
    out.textContent = failure.message;
    out.classList.add('error-text');
  }
}

// --- wiring ------------------------------------------------------------------------------------

if (root && form) {
  const today = new Date();
  const weekAgo = new Date();
  weekAgo.setDate(today.getDate() - 6);
  const f = form.elements;
  for (const e of events) f.event.append(option(e.name, `${e.name} (${e.display})`));
  if (!events.length) f.event.append(option('', t('js.rep.no_events')));
  f.from.value = isoDay(weekAgo);
  f.to.value = isoDay(today);
  f.tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  metricsBox.append(metricRow('count'));
  f.event.addEventListener('change', onEventChange);
  for (const name of ['from', 'to', 'tz']) f[name].addEventListener('change', updateCsv);
  form.querySelector('.add-metric').addEventListener('click', () => {
    metricsBox.append(metricRow(metricChoices(f.event.value)[metricsBox.children.length]?.[0] ?? 'count'));
    updateButtons();
  });
  form.querySelector('.add-group').addEventListener('click', () => {
    groupsBox.append(groupRow());
    updateButtons();
  });
  form.querySelector('.add-filter').addEventListener('click', () => {
    filtersBox.append(filterRow());
    updateButtons();
  });
  form.addEventListener('submit', runReport);

  funnelForm.elements.from.value = isoDay(weekAgo);
  funnelForm.elements.to.value = isoDay(today);
  // the first steps default to the app's own events (the built-in ones come after them)
  const own = events.filter((e) => !e.name.startsWith('$'));
  const [first, second] = own.length ? own : events;
  stepsBox.append(stepRow(first?.name), stepRow((own.length > 1 ? second : first)?.name));
  funnelForm.querySelector('.add-step').addEventListener('click', () => {
    stepsBox.append(stepRow(events[0]?.name));
    numberSteps();
    updateButtons();
  });
  stepsBox.addEventListener('click', () => setTimeout(numberSteps, 0));
  funnelForm.addEventListener('submit', runFunnel);
  for (const box of document.querySelectorAll('.save-report')) {
    box.querySelector('.save-button').addEventListener('click', () => saveReport(box));
  }
  fillFunnelGroups();
  updateButtons();
  updateCsv();
  root.dataset.ready = 'true';
}
