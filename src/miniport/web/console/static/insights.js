// Insights: the overview, real time (pushed over the app's real-time event stream),
// retention cohorts and paths (a Sankey chart, chartjs-chart-sankey), all through the admin
// API, drawn with Chart.js served by the package. Counts get integer axes and straight lines.
import { api, el, t } from './console.js';

const root = document.getElementById('insights-page');
const appid = root?.dataset.appid ?? '';
const base = `/admin/v1/apps/${encodeURIComponent(appid)}/analytics`;
const data = JSON.parse(document.getElementById('insights-data')?.textContent || '{}');
const COLORS = ['#0b8457', '#3867d6', '#e4393c', '#b7791f', '#8e44ad', '#16a085', '#d35400', '#2c3e50'];
const charts = {};
const localTz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

const pad = (n) => String(n).padStart(2, '0');
const isoDay = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const daysAgo = (n) => isoDay(new Date(Date.now() - n * 86400000));
const fmt = (v, digits = 1) => (v === null || v === undefined ? '–' : typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(digits) : String(v));
const pct = (v) => (v === null || v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);

function draw(id, config) {
  charts[id]?.destroy();
  const canvas = document.getElementById(id);
  if (!canvas || !window.Chart) return;
  charts[id] = new window.Chart(canvas, config);
}

function countScales(extra = {}) {
  // counted series: whole numbers on the axis, from zero
  return { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { autoSkip: true, maxTicksLimit: 12 } }, ...extra };
}

function fillTable(table, head, rows) {
  table.dataset.rows = String(rows.length);
  table.tHead.replaceChildren(el('tr', {}, ...head.map((h) => el('th', { text: h }))));
  table.tBodies[0].replaceChildren(...rows.map((cells) => el('tr', {}, ...cells.map((c) => el('td', { text: c })))));
}

function emptyRow(table, text) {
  table.dataset.rows = '0';
  table.tHead.replaceChildren();
  table.tBodies[0].replaceChildren(el('tr', {}, el('td', { class: 'muted', text })));
}

function stat(label, value, testid) {
  return el('div', { class: 'stat', 'data-testid': testid }, el('div', { class: 'muted small', text: label }),
    el('div', { class: 'stat-main', text: value }));
}

async function guarded(form, errorId, run) {
  const error = document.querySelector(`[data-testid="${errorId}"]`);
  error.textContent = '';
  try {
    await run();
  } catch (exc) {
    error.textContent = exc.message;
  }
}

// --- overview ---------------------------------------------------------------------------

const ovForm = document.getElementById('overview-form');
ovForm.elements.from.value = daysAgo(6);
ovForm.elements.to.value = daysAgo(0);
ovForm.elements.tz.value = localTz;
ovForm.elements.group_by.replaceChildren(el('option', { value: '', text: t('js.ins.no_split') }),
  ...(data.properties ?? []).map((p) => el('option', { value: p, text: p })));

function sum(rows, key) {
  return rows.reduce((total, r) => total + (r[key] ?? 0), 0);
}

function daysBetween(from, to) {
  // every local day of the range, so a day without events shows as 0 rather than vanishing
  if (!from || !to || from > to) return null;
  const days = [];
  for (let d = new Date(`${from}T12:00:00`); isoDay(d) <= to && days.length < 400; d.setDate(d.getDate() + 1)) {
    days.push(isoDay(d));
  }
  return days;
}

function drawOverview(found, groupBy, range) {
  const rows = found.rows ?? [];
  document.querySelector('[data-testid="ov-empty"]').hidden = rows.length > 0;
  const sessions = sum(rows, 'sessions');
  const tiles = [
    [t('js.ins.active_users'), groupBy ? '–' : String(sum(rows, 'active_users')), 'ov-active'],
    [t('js.ins.new_users'), groupBy ? '–' : String(sum(rows, 'new_users')), 'ov-new'],
    [t('js.ins.launches'), String(sum(rows, 'launches')), 'ov-launches'],
    [t('js.ins.sessions'), String(sessions), 'ov-sessions'],
    [t('js.ins.page_views'), String(sum(rows, 'page_views')), 'ov-views'],
  ];
  document.querySelector('[data-testid="ov-tiles"]').replaceChildren(...tiles.map(([l, v, id]) => stat(l, v, id)));
  const buckets = (range && daysBetween(range.from, range.to)) || [...new Set(rows.map((r) => r.bucket))];
  const groups = groupBy ? [...new Set(rows.map((r) => r[groupBy]))] : [null];
  const datasets = [];
  groups.forEach((g, gi) => {
    for (const [key, label] of [['active_users', t('js.ins.active_users')], ['new_users', t('js.ins.new_users')]]) {
      const byBucket = Object.fromEntries(rows.filter((r) => !groupBy || r[groupBy] === g).map((r) => [r.bucket, r[key]]));
      datasets.push({
        label: groupBy ? `${label} · ${g ?? '∅'}` : label,
        data: buckets.map((b) => byBucket[b] ?? 0),  // a bucket without events had nobody
        borderColor: COLORS[(gi * 2 + (key === 'new_users' ? 1 : 0)) % COLORS.length],
        backgroundColor: COLORS[(gi * 2 + (key === 'new_users' ? 1 : 0)) % COLORS.length],
        tension: 0,
      });
    }
  });
  draw('overview-chart', { type: buckets.length > 1 ? 'line' : 'bar', data: { labels: buckets, datasets },
    options: { responsive: true, maintainAspectRatio: false, animation: false, scales: countScales() } });
  const head = ['bucket', ...(groupBy ? [groupBy] : []), t('js.ins.active_users'), t('js.ins.new_users'), t('js.ins.launches'),
    t('js.ins.sessions'), t('js.ins.avg_session'), t('js.ins.page_views'), t('js.ins.avg_page'), t('js.ins.pages_per_session')];
  fillTable(document.querySelector('[data-testid="ov-table"]'), head, rows.map((r) => [r.bucket, ...(groupBy ? [fmt(r[groupBy])] : []),
    r.active_users, r.new_users, r.launches, r.sessions, fmt(r.avg_session_s), r.page_views, fmt(r.avg_page_s), fmt(r.pages_per_session)]));
  const pages = found.top_pages ?? [];
  const pagesTable = document.querySelector('[data-testid="ov-pages"]');
  if (pages.length) {
    fillTable(pagesTable, [...(groupBy ? [groupBy] : []), t('js.ins.page'), t('js.ins.views'), t('js.ins.visitors'), t('js.ins.avg_time'), t('js.ins.exit_rate')],
      pages.map((p) => [...(groupBy ? [fmt(p[groupBy])] : []), p.path, p.views, p.visitors, fmt(p.avg_time_s), pct(p.exit_rate)]));
  } else emptyRow(pagesTable, t('js.ins.no_pages'));
  const scenes = found.scenes ?? [];
  const scenesTable = document.querySelector('[data-testid="ov-scenes"]');
  if (scenes.length) {
    fillTable(scenesTable, [...(groupBy ? [groupBy] : []), t('js.ins.scene'), t('js.ins.users')],
      scenes.map((s) => [...(groupBy ? [fmt(s[groupBy])] : []), s.scene ?? '–', s.users]));
  } else emptyRow(scenesTable, t('js.ins.no_launches'));
}

async function runOverview(event) {
  event?.preventDefault();
  const f = ovForm.elements;
  const groupBy = f.group_by.value || null;
  const body = { from: f.from.value || null, to: f.to.value || null, granularity: f.granularity.value,
    tz: f.tz.value.trim() || 'UTC', group_by: groupBy };
  const range = body.granularity === 'day' ? { from: body.from, to: body.to } : null;
  await guarded(ovForm, 'ov-error', async () => drawOverview(await api('POST', `${base}/overview`, body), groupBy, range));
  root.dataset.ready = 'true';
}
ovForm.addEventListener('submit', runOverview);

// --- real time ---------------------------------------------------------------------------
// Pushed, not polled: the page listens on the app's real-time stream (server-sent events, the
// mechanism of the live test view). On each (re)connect it fetches the report once, then adds
// what each pushed message carries (events and users per minute, the latest events); the
// minutes roll over on their own at each minute boundary. Events per minute add up exactly:
// the fetch counts the batches received before its received_before_ms, and a push counts
// only what was received from then on (a push that spans that instant is split by its
// per-batch counts, or the page fetches again when it has none).
// Active users per minute: a pushed user counts once in a minute unless the page already knew
// them there (from a push, or from the latest events of the fetch); a user active in that
// minute before the page's fetch and not among its latest events counts once more, until the
// next (re)connect or reload.

const MINUTE = 60_000;
const WINDOW = 30;
const SHOWN = 20;
const rt = {
  offset: 0,          // server clock - browser clock (ms), from the fetch
  fetchedAt: null,    // the fetch's received_before_ms: batches received before it are in it
  fetching: null,     // the messages that wait for the fetch in flight
  generation: 0,
  minutes: new Map(), // minute_ms -> { events, users, seen: Set of user ids known in it }
  latest: [],
  source: null,
  roll: null,
};

const serverNow = () => Date.now() + rt.offset;
const minuteOf = (ms) => Math.floor(ms / MINUTE) * MINUTE;

function windowMinutes() {
  const current = minuteOf(serverNow());
  return Array.from({ length: WINDOW }, (_, i) => current - (WINDOW - 1 - i) * MINUTE);
}

function when(ms) {
  // today's events by their time; an older one (sent late, after a time offline) with its date
  const d = new Date(ms);
  return isoDay(d) === isoDay(new Date()) ? d.toLocaleTimeString() : `${isoDay(d)} ${d.toLocaleTimeString()}`;
}

const latestKey = (e) => `${e.received_ms}|${e.ts_ms}|${e.user}|${e.event}|${e.page ?? ''}`;

function knowUser(minute, user) {
  const entry = rt.minutes.get(minute);
  if (entry) entry.seen.add(user);
}

function drawRealtime() {
  const labels = [];
  const events = [];
  const users = [];
  for (const m of windowMinutes()) {
    const entry = rt.minutes.get(m);
    const d = new Date(m);
    labels.push(`${pad(d.getHours())}:${pad(d.getMinutes())}`);
    events.push(entry?.events ?? 0);  // a minute without events had none
    users.push(entry?.users ?? 0);
  }
  const first = windowMinutes()[0];
  for (const m of rt.minutes.keys()) if (m < first) rt.minutes.delete(m);  // rolled out
  const total = events.reduce((a, b) => a + b, 0);
  const last5 = events.slice(-5).reduce((a, b) => a + b, 0);
  document.querySelector('[data-testid="rt-tiles"]').replaceChildren(
    stat(t('js.ins.events_30'), String(total), 'rt-events'),
    stat(t('js.ins.events_5'), String(last5), 'rt-events-5'));
  const chart = charts['realtime-chart'];
  if (chart) {  // updated in place: pushes come several times a second
    chart.data.labels = labels;
    chart.data.datasets[0].data = events;
    chart.data.datasets[1].data = users;
    chart.update('none');
  } else {
    draw('realtime-chart', { type: 'bar', data: { labels, datasets: [
      { label: t('js.ins.events'), data: events, backgroundColor: COLORS[1] },
      { label: t('js.ins.active_users'), data: users, backgroundColor: COLORS[0] },
    ] }, options: { responsive: true, maintainAspectRatio: false, animation: false, scales: countScales() } });
  }
  const table = document.querySelector('[data-testid="rt-latest"]');
  const latest = rt.latest.slice(0, SHOWN);
  if (latest.length) {
    fillTable(table, [t('js.ins.time'), t('js.ins.event'), t('js.ins.user'), t('js.ins.page'), '$platform'],
      latest.map((e) => [when(e.ts_ms), e.event, e.user, e.page ?? e.$path ?? '', e.$platform ?? '']));
  } else emptyRow(table, t('js.ins.no_recent'));
  root.dataset.rtEvents = String(total);
}

function scheduleRoll() {
  // the minutes move on at each minute boundary, events or not
  clearTimeout(rt.roll);
  rt.roll = setTimeout(() => { drawRealtime(); scheduleRoll(); }, MINUTE - (serverNow() % MINUTE) + 50);
}

function applyFetch(found) {
  rt.offset = found.now_ms - Date.now();
  rt.fetchedAt = found.received_before_ms ?? found.now_ms;
  const current = minuteOf(found.now_ms);
  const minutes = found.minutes ?? [];
  rt.minutes = new Map(minutes.map((m, i) => [current - (minutes.length - 1 - i) * MINUTE,
    { events: m.events, users: m.active_users, seen: new Set() }]));
  rt.latest = found.latest ?? [];
  for (const e of rt.latest) knowUser(minuteOf(e.ts_ms), e.user);  // counted by the fetch
}

function applyPush(message) {
  if (message.resync) {
    refetch();
    return;
  }
  const [firstReceived, lastReceived] = message.received_ms ?? [];
  const cut = rt.fetchedAt;
  if (cut === null || lastReceived < cut) return;  // in the fetch already
  let minutes = message.minutes ?? [];
  if (firstReceived !== null && firstReceived < cut) {
    // batches from before the fetch and after it: add only those received from its instant on
    if (!Array.isArray(message.batches)) {
      refetch();
      return;
    }
    const after = new Map();
    for (const [received, minute, events, user] of message.batches) {
      if (received < cut) continue;
      let m = after.get(minute);
      if (!m) after.set(minute, m = { minute_ms: minute, events: 0, users: new Set() });
      m.events += events;
      m.users.add(user);
    }
    minutes = [...after.values()].map((m) => ({ ...m, users: [...m.users] }));
  }
  const first = windowMinutes()[0];
  for (const m of minutes) {
    if (m.minute_ms < first) continue;  // reported late, for a minute out of the window
    let entry = rt.minutes.get(m.minute_ms);
    if (!entry) rt.minutes.set(m.minute_ms, entry = { events: 0, users: 0, seen: new Set() });
    entry.events += m.events;
    for (const user of m.users ?? []) {
      if (!entry.seen.has(user)) {
        entry.seen.add(user);
        entry.users += 1;
      }
    }
  }
  const known = new Set(rt.latest.map(latestKey));
  const fresh = (message.latest ?? []).filter((e) => e.received_ms >= cut && !known.has(latestKey(e)));
  rt.latest = [...fresh, ...rt.latest]
    .sort((a, b) => b.received_ms - a.received_ms || b.ts_ms - a.ts_ms)
    .slice(0, 100);
  drawRealtime();
  stamp('live');
}

function stamp(state, text) {
  root.dataset.realtime = state;
  document.querySelector('[data-testid="rt-updated"]').textContent = text
    ?? (state === 'live' ? t('js.ins.live', { time: new Date().toLocaleTimeString() }) : t('js.ins.connecting'));
}

async function refetch() {
  // one fetch on each (re)connect (or when a push says what it added is unknown); pushes that
  // come meanwhile wait for it
  const waiting = [];
  rt.fetching = waiting;
  const generation = ++rt.generation;  // a newer fetch supersedes this one (and its buffer)
  try {
    const found = await api('GET', `${base}/realtime?tz=${encodeURIComponent(localTz)}&latest=100`);
    if (generation !== rt.generation) return;
    applyFetch(found);
    rt.fetching = null;
    for (const message of waiting) applyPush(message);
    drawRealtime();
    scheduleRoll();
    stamp('live');
  } catch (exc) {
    if (generation !== rt.generation) return;
    rt.fetching = null;
    stamp('error', exc.message);
  }
}

function openRealtime() {
  rt.source?.close();
  const source = new EventSource(`${base}/realtime/events`);
  rt.source = source;
  source.addEventListener('connected', () => refetch());
  source.addEventListener('unauthorized', () => {
    // the access that opened it is gone (signed out, key revoked, no longer a member): the
    // server ended the stream, and a reconnect would be refused
    source.close();
    stamp('closed', t('js.access_gone'));
  });
  source.addEventListener('realtime', (event) => {
    const message = JSON.parse(event.data);
    if (rt.fetching) rt.fetching.push(message);
    else applyPush(message);
  });
  source.onerror = () => {
    // EventSource reconnects by itself (and we fetch again on "connected"); closed for good
    // when the server refused it (signed out, no longer a member)
    if (source.readyState === EventSource.CLOSED) stamp('closed', t('js.ins.stream_closed'));
    else stamp('connecting');
  };
}
window.addEventListener('pagehide', () => rt.source?.close());

// --- retention ---------------------------------------------------------------------------

const retForm = document.getElementById('retention-form');
const eventChoices = (extra) => [...extra.map(([v, l]) => el('option', { value: v, text: l })),
  ...(data.events ?? []).map((e) => el('option', { value: e, text: e }))];
retForm.elements.start.replaceChildren(...eventChoices([['$any', t('js.ins.any_event')], ['$new', t('js.ins.new_user')]]));
retForm.elements.return.replaceChildren(...eventChoices([['$any', t('js.ins.any_event')]]));
retForm.elements.from.value = daysAgo(13);
retForm.elements.to.value = daysAgo(0);

function drawRetention(found) {
  const cohorts = found.cohorts ?? [];
  const table = document.querySelector('[data-testid="ret-table"]');
  if (!cohorts.length) {
    emptyRow(table, t('js.ins.no_cohorts'));
    draw('retention-chart', { type: 'line', data: { labels: [], datasets: [] } });
    return;
  }
  const periods = Math.max(...cohorts.map((c) => c.retained.length));
  const unit = found.unit === 'week' ? t('js.ins.week_n') : t('js.ins.day_n');
  const head = [t('js.ins.cohort'), t('js.ins.size'), ...Array.from({ length: periods }, (_, k) => unit.replace('{n}', k))];
  const rows = cohorts.map((c) => [c.cohort, c.size, ...Array.from({ length: periods }, (_, k) => (
    k < c.retained.length ? `${c.size ? ((100 * c.retained[k]) / c.size).toFixed(1) : '0.0'}% (${c.retained[k]})` : ''))]);
  fillTable(table, head, rows);
  // the average curve: share of the cohorts' users retained k periods later (cohorts that reached k)
  const curve = Array.from({ length: periods }, (_, k) => {
    const reached = cohorts.filter((c) => k < c.retained.length);
    const size = reached.reduce((n, c) => n + c.size, 0);
    return size ? (100 * reached.reduce((n, c) => n + c.retained[k], 0)) / size : null;
  });
  draw('retention-chart', { type: 'line', data: { labels: head.slice(2), datasets: [
    { label: t('js.ins.retained_pct'), data: curve, borderColor: COLORS[0], backgroundColor: COLORS[0], tension: 0, spanGaps: false },
  ] }, options: { responsive: true, maintainAspectRatio: false, animation: false,
    scales: { y: { beginAtZero: true, max: 100, ticks: { callback: (v) => `${v}%` } } } } });
}

retForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const f = retForm.elements;
  const body = { start: f.start.value, return: f.return.value, unit: f.unit.value, periods: Number(f.periods.value),
    from: f.from.value || null, to: f.to.value || null, tz: localTz };
  guarded(retForm, 'ret-error', async () => drawRetention(await api('POST', `${base}/retention`, body)))
    .then(() => { root.dataset.retention = 'drawn'; });
});

// --- paths -------------------------------------------------------------------------------

const pathsForm = document.getElementById('paths-form');
pathsForm.elements.from.value = daysAgo(6);
pathsForm.elements.to.value = daysAgo(0);
function fillStarts() {
  const byEvent = pathsForm.elements.by.value === 'event';
  const options = byEvent ? (data.events ?? []) : [];
  document.getElementById('paths-starts').replaceChildren(...options.map((e) => el('option', { value: e })));
}
pathsForm.elements.by.addEventListener('change', fillStarts);
fillStarts();

function drawPaths(found) {
  const links = found.links ?? [];
  const table = document.querySelector('[data-testid="paths-table"]');
  if (!links.length) {
    emptyRow(table, found.users ? t('js.ins.paths_end', { users: found.users }) : t('js.ins.no_paths'));
    draw('paths-chart', { type: 'bar', data: { labels: [], datasets: [] } });
    return;
  }
  fillTable(table, [t('js.ins.step'), t('js.ins.from'), t('js.ins.to'), t('js.ins.users')],
    links.map((l) => [l.depth, l.from, l.to, l.users]));
  const node = (depth, name) => `${depth}:${name}`;
  const labels = {};
  for (const n of found.nodes ?? []) labels[node(n.depth, n.name)] = `${n.name} (${n.users})`;
  labels[node(0, found.start)] = `${found.start} (${found.users})`;
  draw('paths-chart', { type: 'sankey', data: { datasets: [{
    data: links.map((l) => ({ from: node(l.depth - 1, l.from), to: node(l.depth, l.to), flow: l.users })),
    labels, colorFrom: (c) => COLORS[Number(String(c.dataset.data[c.dataIndex].from).split(':')[0]) % COLORS.length],
    colorTo: (c) => COLORS[Number(String(c.dataset.data[c.dataIndex].to).split(':')[0]) % COLORS.length],
    colorMode: 'gradient', size: 'max',
  }] }, options: { responsive: true, maintainAspectRatio: false, animation: false } });
}

pathsForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const f = pathsForm.elements;
  const body = { start: f.start.value.trim(), by: f.by.value, depth: Number(f.depth.value),
    from: f.from.value || null, to: f.to.value || null, tz: localTz };
  guarded(pathsForm, 'paths-error', async () => drawPaths(await api('POST', `${base}/paths`, body)))
    .then(() => { root.dataset.paths = 'drawn'; });
});

runOverview();
openRealtime();
