// Background-data health: summary, charts (Chart.js, served by the package), the fetch log,
// and the devtools (fetch now, clear cache, push a refresh).
import { api, el, formatTime, t, verdictBadge } from './console.js';

const root = document.getElementById('health-page');
const appid = root?.dataset.appid;
const base = `/admin/v1/apps/${encodeURIComponent(appid ?? '')}`;
const COLORS = { periodic: '#0b8457', pre: '#3867d6' };
const REFRESH_MS = 15000;
let hours = 24;
const charts = {};

function chartFor(id, unit, { max } = {}) {
  const canvas = document.getElementById(id);
  if (!canvas || typeof window.Chart !== 'function') return null;
  if (!charts[id]) {
    charts[id] = new window.Chart(canvas, {
      type: 'line',
      data: { labels: [], datasets: [] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        spanGaps: true,
        interaction: { mode: 'index', intersect: false },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
        scales: {
          y: { beginAtZero: true, max, title: { display: Boolean(unit), text: unit } },
          x: { ticks: { maxTicksLimit: 8, autoSkip: true } },
        },
      },
    });
  }
  return charts[id];
}

function draw(series) {
  const labels = series.buckets.map((ts) => formatTime(ts, { short: hours <= 24 }));
  const specs = [
    ['chart-success', '%', (row) => (row && row.success_rate !== null ? row.success_rate * 100 : null), { max: 100 }],
    ['chart-latency', 'ms', (row) => (row ? row.avg_latency_ms : null), {}],
    ['chart-size', t('js.bytes'), (row) => (row ? row.avg_bytes : null), {}],
  ];
  for (const [id, unit, pick, options] of specs) {
    const chart = chartFor(id, unit, options);
    if (!chart) continue;
    chart.data.labels = labels;
    chart.data.datasets = Object.entries(series.kinds).map(([kind, rows]) => ({
      label: t(`js.kind.${kind}`),
      data: rows.map(pick),
      borderColor: COLORS[kind] ?? '#888',
      backgroundColor: COLORS[kind] ?? '#888',
      pointRadius: 2,
      tension: 0.25,
    }));
    chart.update();
    const empty = chart.data.datasets.every((d) => d.data.every((v) => v === null || v === undefined));
    noDataNote(chart.canvas.closest('.chart-box'), empty);
  }
  root.dataset.chartsReady = 'true';
}

/** An empty chart says so in its own area, not as a blank grid. */
function noDataNote(box, empty) {
  let note = box.querySelector('.chart-empty');
  if (!note) {
    note = el('p', { class: 'chart-empty', 'data-testid': 'chart-empty' });
    box.append(note);
  }
  note.textContent = t('js.chart_no_data');
  note.classList.toggle('hidden', !empty);
  box.dataset.empty = String(empty);
}

function summarize(health) {
  for (const box of root.querySelectorAll('.stat[data-kind]')) {
    const entry = health.kinds[box.dataset.kind];
    const rate = entry?.success_rate;
    box.querySelector('.rate').textContent = rate === null || rate === undefined ? '–' : `${(rate * 100).toFixed(1)}%`;
    box.querySelector('.total').textContent = String(entry?.total ?? 0);
    let latency = null;
    if (entry) {
      let sum = 0;
      let count = 0;
      for (const v of Object.values(entry.verdicts)) {
        if (v.avg_latency_ms !== null) {
          sum += v.avg_latency_ms * v.count;
          count += v.count;
        }
      }
      latency = count ? sum / count : null;
    }
    box.querySelector('.latency').textContent = latency === null ? '–' : latency.toFixed(1);
  }
}

async function loadHealth() {
  const [health, series] = await Promise.all([
    api('GET', `${base}/health?hours=${hours}`),
    api('GET', `${base}/health/series?hours=${hours}&buckets=${hours <= 1 ? 12 : hours <= 24 ? 24 : 28}`),
  ]);
  summarize(health);
  draw(series);
}

async function loadLog() {
  const form = document.getElementById('log-filter');
  const user = form?.elements.user_id.value.trim();
  const query = new URLSearchParams({ limit: '100' });
  if (user) query.set('user_id', user);
  const { entries } = await api('GET', `${base}/fetch-log?${query}`);
  const body = root.querySelector('[data-testid="fetch-log"] tbody');
  body.replaceChildren(...entries.map((e) => el('tr', { 'data-verdict': e.verdict },
    el('td', { text: formatTime(e.ts) }),
    el('td', { text: e.user_id }),
    el('td', { text: t(`js.kind.${e.kind}`) }),
    el('td', { text: t(`js.trigger.${e.trigger}`), title: e.trigger }),
    el('td', {}, verdictBadge(e.verdict)),
    el('td', { text: e.status ?? '' }),
    el('td', { text: e.bytes ?? '' }),
    el('td', { text: e.latency_ms === null ? '' : Number(e.latency_ms).toFixed(1) }),
    el('td', { class: 'error-cell', title: e.error ?? '' }, ...fetchError(e)),
  )));
  if (!entries.length) body.append(el('tr', {}, el('td', { colSpan: 9, class: 'muted', text: t('js.no_fetches') })));
  root.dataset.logReady = 'true';
}

async function refresh() {
  try {
    await Promise.all([loadHealth(), loadLog()]);
  } catch (error) {
    console.warn('health', error);
  }
}

function showResult(shown) {
  const box = document.getElementById('fetch-result');
  box.classList.remove('hidden');
  const badge = verdictBadge(shown.verdict);
  badge.dataset.testid = 'verdict';
  box.querySelector('.verdict-slot').replaceChildren(badge);
  const kv = box.querySelector('.result-kv');
  const rows = [
    ['js.r.verdict', shown.verdict],
    ['js.r.status', shown.status ?? '–'],
    ['js.r.bytes', shown.bytes ?? '–'],
    ['js.r.latency', shown.latency_ms === null || shown.latency_ms === undefined ? '–' : `${shown.latency_ms} ms`],
    ['js.r.error', shown.error ?? '–'],
  ];
  if (shown.redirects?.length) rows.push(['js.r.redirects', shown.redirects.join(' → ')]);
  kv.replaceChildren(...rows.flatMap(([key, value]) => [el('dt', { text: t(key) }), el('dd', { text: String(value) })]));
  const request = shown.request ?? {};
  const lines = [];
  if (request.url) {
    lines.push(`${request.method ?? 'GET'} ${request.url}`);
    for (const [name, value] of Object.entries(request.headers ?? {})) lines.push(`${name}: ${value}`);
  } else {
    lines.push(t('js.no_request'));
  }
  box.querySelector('.request').textContent = lines.join('\n');
  showResponse(box, shown);
}

const SHOWN_BODY = 4096;  // characters of the body shown; the whole body is a download

function showResponse(box, shown) {
  const status = shown.status ? `HTTP ${shown.status}` : t('js.no_response');
  const headers = (shown.headers ?? []).map(([name, value]) => `${name}: ${value}`);
  box.querySelector('.response-headers').textContent = [status, ...headers].join('\n');
  const body = shown.body ?? '';
  box.querySelector('.response-body').textContent = body.slice(0, SHOWN_BODY);
  box.querySelector('.response-body').classList.toggle('hidden', !body);
  const note = box.querySelector('.body-note');
  note.textContent = body.length > SHOWN_BODY
    ? t('js.body_cut', { shown: SHOWN_BODY, total: body.length })
    : (body ? '' : t('js.no_body'));
  const link = box.querySelector('.body-download');
  if (link.href) URL.revokeObjectURL(link.href);
  link.classList.toggle('hidden', !body);
  if (body) link.href = URL.createObjectURL(new Blob([body], { type: 'text/plain;charset=utf-8' }));
}

function wireDevtools() {
  const fetchForm = document.getElementById('fetch-now');
  if (!fetchForm) return;
  const preOnly = fetchForm.querySelector('.pre-only');
  fetchForm.elements.type.addEventListener('change', () => {
    preOnly.classList.toggle('hidden', fetchForm.elements.type.value !== 'pre');
  });
  fetchForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = fetchForm.querySelector('button[type="submit"]');
    button.disabled = true;
    const f = fetchForm.elements;
    const body = { user_id: f.user_id.value.trim(), type: f.type.value };
    if (body.type === 'pre') Object.assign(body, { path: f.path.value, query: f.query.value, scene: Number(f.scene.value || 1001) });
    try {
      showResult(await api('POST', `${base}/devtools/fetch`, body));
      await refresh();
    } catch (error) {
      showResult({ verdict: 'error', error: error.message, request: {} });
    } finally {
      button.disabled = false;
    }
  });

  const clearForm = document.getElementById('clear-cache');
  clearForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const scope = event.submitter?.dataset.scope ?? 'user';
    const user = clearForm.elements.user_id.value.trim();
    const out = clearForm.querySelector('.result');
    if (scope === 'user' && !user) {
      out.textContent = t('js.need_user');
      return;
    }
    if (scope === 'all' && !window.confirm(t('js.clear_all_confirm'))) return;
    try {
      const result = await api('POST', `${base}/devtools/clear`, scope === 'user' ? { user_id: user } : undefined);
      out.textContent = t(scope === 'user' ? 'js.cleared_user' : 'js.cleared_all', { n: result.cleared, user });
    } catch (error) {
      out.textContent = error.message;
    }
  });

  const pushForm = document.getElementById('push');
  pushForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = pushForm.querySelector('.result');
    out.textContent = t('js.working');
    try {
      const result = await api('POST', `${base}/devtools/push`, { user_id: pushForm.elements.user_id.value.trim() });
      out.replaceChildren(
        t('js.pushed', { n: result.devices.length, devices: result.devices.join(', ') || '–' }), ' ',
        verdictBadge(result.verdict),
      );
      showResult(result);
      await refresh();
    } catch (error) {
      out.textContent = error.message;
    }
  });
}

if (root) {
  for (const button of root.querySelectorAll('.segmented button[data-hours]')) {
    button.addEventListener('click', () => {
      hours = Number(button.dataset.hours);
      for (const other of root.querySelectorAll('.segmented button')) other.classList.toggle('active', other === button);
      refresh();
    });
  }
  document.getElementById('log-filter')?.addEventListener('submit', (event) => {
    event.preventDefault();
    loadLog().catch((error) => console.warn(error));
  });
  wireDevtools();
  refresh();
  setInterval(() => {
    if (document.visibilityState === 'visible') refresh();
  }, REFRESH_MS);
}

/** A failed fetch's reason in the page's language, the server's own words beneath. */
function fetchError(entry) {
  if (!entry.error) return [];
  return [el('span', { text: t(`js.fetch_error.${entry.verdict}`) }),
    el('div', { class: 'muted small', text: entry.error })];
}
