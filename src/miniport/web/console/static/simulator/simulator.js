// The simulator: a test device in the browser. It gets a runtime token for the chosen user and
// device from the admin API, runs the JavaScript runtime (/sdk/miniport-runtime.js) and the
// sample mini-program on it, and shows the background data it receives (read at launch, and
// live from onBackgroundFetchData / the devtools' push). Analytics: the configuration in force
// for the user (published, or a running test's) is fetched at launch and followed live
// (`analyticsConfig`); the page lifecycle and taps (hooks.js) drive the runtime's codeless
// evaluator, and the panel lists every event the device reported and the platform's verdict.
// The device model chosen gives the runtime its system properties (`system`: $platform, $model,
// ...; "this browser" leaves them to the runtime's browser fallback), and the runtime's built-in
// events ($launch, $show, $hide, $pageview, $pageleave) show in the panel with the custom ones.
import { createRuntime } from '/sdk/miniport-runtime.js';
import { api, formatTime, t } from '../console.js';
import { MiniProgram } from './framework.js';
import { createHooks } from './hooks.js';
import { PAGES, TAB_BAR } from './miniapp.js';

const root = document.getElementById('simulator');
const form = document.getElementById('sim-form');
const tokenForm = document.getElementById('token-form');
const status = root.querySelector('[data-testid="sim-status"]');
const logList = root.querySelector('[data-testid="sim-log"]');
const STORE = 'miniport.simulator';
const MAX_LOG = 200;
const analyticsBlock = root.querySelector('[data-testid="sim-analytics"]');
const analyticsLog = root.querySelector('[data-testid="sim-analytics-log"]');
const EVALUATOR_HOOKS = new Set(['launch', 'background', 'foreground', 'share', 'pageLoad', 'pageShow',
  'pageHide', 'pageUnload', 'setData', 'setAppData', 'click', 'switchTab', 'pullDownRefresh']);
const counts = { queued: 0, accepted: 0, refused: 0 };
let builtinCount = 0;
// plausible devices for the runtime's `system` (the host container's job on a real device)
const SYSTEMS = {
  iphone: { $platform: 'ios', $os_version: '17.2', $brand: 'Apple', $model: 'iPhone 15', $screen: '393x852',
    $host_version: '8.0.50', $network: 'wifi' },
  android: { $platform: 'android', $os_version: '14', $brand: 'Xiaomi', $model: '23127PN0CC', $screen: '412x915',
    $host_version: '8.0.49', $network: '5g' },
  windows: { $platform: 'windows', $os_version: '11', $brand: 'PC', $model: 'PC', $screen: '1920x1080',
    $host_version: '3.9.10', $network: 'wifi' },
  browser: {},
};

function systemFor(choice) {
  const preset = SYSTEMS[choice] ?? SYSTEMS.iphone;
  if (choice === 'browser') return { $env: 'develop', $mp_version: '0.0.0' };
  return { ...preset, $env: 'develop', $mp_version: '0.0.0', $language: document.documentElement.lang || navigator.language };
}

const isBuiltin = (ev) => typeof ev.event === 'string' && ev.event.startsWith('$');

let runtime = null;
let program = null;

function log(kind, text) {
  const item = document.createElement('li');
  item.dataset.kind = kind;
  const time = document.createElement('time');
  time.textContent = formatTime(Date.now(), { ms: true }).slice(11);
  item.append(time, ' ', text);
  logList.prepend(item);
  while (logList.children.length > MAX_LOG) logList.lastElementChild.remove();
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** Show background data in the side panel; `how` is 'read' (at launch / on demand) or 'live'. */
function showData(kind, res, how) {
  const block = root.querySelector(`[data-testid="sim-${kind === 'pre' ? 'pre' : 'periodic'}"]`);
  if (!block) return;
  const badge = block.querySelector('.data-state');
  badge.className = `badge ${how === 'live' ? 'live' : 'ok'} data-state`;
  badge.textContent = t(how === 'live' ? 'js.sim.live' : 'js.sim.read');
  block.dataset.state = how;
  block.dataset.received = String((Number(block.dataset.received) || 0) + 1);
  const meta = [t('js.sim.arrived', { time: formatTime(res.timeStamp, { ms: true }) })];
  if (kind === 'pre') meta.push(`path=${res.path} query=${res.query} scene=${res.scene}`);
  block.querySelector('.meta').textContent = meta.join(' · ');
  block.querySelector('.data-body').textContent = pretty(res.fetchedData);
}

function showMissing(kind, errMsg) {
  const block = root.querySelector(`[data-testid="sim-${kind}"]`);
  const badge = block.querySelector('.data-state');
  badge.className = 'badge off data-state';
  badge.textContent = t('js.sim.none');
  block.dataset.state = 'none';
  block.querySelector('.meta').textContent = errMsg;
  block.querySelector('.data-body').textContent = '';
}

// --- analytics panel ---

function showConfig({ version, testId }) {
  const badge = analyticsBlock.querySelector('.config-state');
  let state = 'none';
  if (testId) state = 'test';
  else if (version) state = 'published';
  analyticsBlock.dataset.config = state;
  analyticsBlock.dataset.version = String(version ?? 0);
  analyticsBlock.dataset.test = testId ?? '';
  badge.className = `badge config-state ${state === 'test' ? 'live' : state === 'published' ? 'ok' : 'off'}`;
  badge.textContent = state === 'test' ? t('js.sim.an_test', { test: testId })
    : state === 'published' ? t('js.sim.an_published', { n: version }) : t('js.sim.an_none');
  const events = runtime?.analytics.config?.events ?? [];
  const configured = events.filter((e) => e.mode === 'configured').length;
  analyticsBlock.querySelector('.meta').textContent = t('js.sim.an_events', { n: events.length, configured });
}

// the counts are of custom events; built-in events are counted apart
function showCounts() {
  const text = t('js.sim.an_counts', counts);
  analyticsBlock.querySelector('.counts').textContent = builtinCount
    ? `${text} · ${t('js.sim.an_builtin_count', { n: builtinCount })}` : text;
  analyticsBlock.dataset.accepted = String(counts.accepted);
  analyticsBlock.dataset.builtin = String(builtinCount);
}

function describeReport(ev) {
  const values = Object.entries(ev.data ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
  let how = ev.trigger ? `${ev.trigger}${ev.page ? ` ${ev.page}` : ''}` : t('js.sim.an_from_code');
  if (isBuiltin(ev)) how = t('js.sim.an_builtin');
  return `${ev.event} · ${how}${values ? ` · ${values}` : ''}`;
}

function onReport(notice) {
  if (notice.type === 'queued') {
    for (const ev of notice.events) {
      if (isBuiltin(ev)) builtinCount += 1;
      else counts.queued += 1;
      const item = document.createElement('li');
      item.dataset.uid = ev.id;
      item.dataset.event = String(ev.event);
      item.dataset.builtin = String(isBuiltin(ev));
      if (ev.context?.$session) item.dataset.session = String(ev.context.$session);
      item.dataset.state = 'queued';
      const time = document.createElement('time');
      time.textContent = formatTime(ev.ts, { ms: true }).slice(11);
      const state = document.createElement('span');
      state.className = 'badge pending state';
      state.textContent = t('js.sim.an_queued');
      item.append(time, ' ', describeReport(ev), ' ', state);
      analyticsLog.prepend(item);
      while (analyticsLog.children.length > MAX_LOG) analyticsLog.lastElementChild.remove();
    }
  } else {
    const refused = new Map((notice.type === 'sent' ? notice.result.rejected : []).map((r) => [r.id, r.reason]));
    for (const ev of notice.events) {
      const item = analyticsLog.querySelector(`li[data-uid="${CSS.escape(ev.id)}"]`);
      let state = 'waiting';
      let text = t('js.sim.an_waiting', { error: notice.error ?? '' });
      const counted = isBuiltin(ev) ? {} : counts;
      if (notice.type === 'sent' && refused.has(ev.id)) {
        state = 'refused';
        text = t('js.sim.an_refused', { reason: refused.get(ev.id) });
        counted.refused = (counted.refused ?? 0) + 1;
      } else if (notice.type === 'sent') {
        state = 'accepted';
        text = t('js.sim.an_accepted');
        counted.accepted = (counted.accepted ?? 0) + 1;
      } else if (notice.type === 'dropped') {
        state = 'refused';
        text = t('js.sim.an_refused', { reason: notice.error });
        counted.refused = (counted.refused ?? 0) + 1;
      }
      if (!item) continue;
      item.dataset.state = state;
      const badge = item.querySelector('.state');
      badge.className = `badge state ${state === 'accepted' ? 'ok' : state === 'refused' ? 'bad' : 'pending'}`;
      badge.textContent = text;
    }
  }
  showCounts();
}

function saved() {
  try {
    return JSON.parse(localStorage.getItem(STORE) ?? '{}');
  } catch {
    return {};
  }
}

function save() {
  const f = form.elements;
  localStorage.setItem(STORE, JSON.stringify({
    user_id: f.user_id.value, device_id: f.device_id.value, prefetch: f.prefetch.checked, system: f.system.value,
  }));
}

function restore() {
  const values = saved();
  const f = form.elements;
  if (values.user_id) f.user_id.value = values.user_id;
  if (values.device_id) f.device_id.value = values.device_id;
  if (typeof values.prefetch === 'boolean') f.prefetch.checked = values.prefetch;
  if (values.system && SYSTEMS[values.system]) f.system.value = values.system;
  const wanted = root.dataset.appid;
  if (wanted) f.appid.value = wanted;
  if (root.dataset.user) f.user_id.value = root.dataset.user;
}

function waitConnected(rt, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    rt.on('connected', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function readData(wx, kind, waitMs) {
  try {
    const res = await wx.getBackgroundFetchData(waitMs ? { fetchType: kind, waitMs } : { fetchType: kind });
    showData(kind, res, 'read');
    log('read', `${res.errMsg} (${kind})`);
  } catch (err) {
    showMissing(kind, err.errMsg);
    log('read', err.errMsg);
  }
}

async function launch(event) {
  event?.preventDefault();
  save();
  const f = form.elements;
  const appid = f.appid.value;
  if (!appid) return;
  const user = f.user_id.value.trim();
  const device = f.device_id.value.trim();
  runtime?.analytics.close();
  runtime?.close();
  runtime = null;
  status.textContent = t('js.sim.starting');
  root.dataset.launched = 'false';
  let token;
  try {
    ({ runtime_token: token } = await api('POST', '/admin/v1/runtime-tokens', { user_id: user, device_id: device, appid }));
  } catch (error) {
    status.textContent = error.message;
    return;
  }
  const rt = createRuntime({
    appid,
    token,
    system: systemFor(f.system.value),
    // the device's offline queue (kept across reloads), one per simulated user and device
    analytics: { storageKey: `miniport.simulator.analytics.${appid}.${user}.${device}`, flushIntervalMs: 1000,
      testFlushIntervalMs: 200 },
  });
  runtime = rt;
  const wx = runtime.wx;
  Object.assign(counts, { queued: 0, accepted: 0, refused: 0 });
  builtinCount = 0;
  analyticsLog.replaceChildren();
  showConfig({ version: null, testId: null });
  showCounts();
  rt.analytics.onReport(onReport);
  let fetched = false;
  rt.analytics.onConfig((notice) => {
    showConfig(notice);
    if (fetched) log('analytics', t('js.sim.an_config_live', { state: analyticsBlock.querySelector('.config-state').textContent }));
  });
  for (const ev of rt.analytics.queue) onReport({ type: 'queued', events: [ev] }); // left from before a reload
  runtime.on('devtoolsRefresh', (message) => log('push', t('js.sim.push_received', { verdict: message.verdict ?? '' })));
  wx.onBackgroundFetchData((res) => {
    showData(res.fetchType, res, 'live');
    log('live', t('js.sim.live_data', { kind: res.fetchType }));
  });
  const connected = await waitConnected(runtime, 5000);
  log('connect', connected ? t('js.sim.connected') : t('js.sim.not_connected'));
  try {
    await rt.analytics.fetchConfig();
    fetched = true;
    log('analytics', t('js.sim.an_config', { state: analyticsBlock.querySelector('.config-state').textContent }));
  } catch (err) {
    log('analytics', err.errMsg ?? String(err));
  }

  const scene = Number(f.scene.value || 1001);
  const query = f.query.value;
  if (f.prefetch.checked) {
    try {
      const result = await runtime.launch({ path: f.path.value, query, scene });
      log('launch', `${result.errMsg} · ${result.prefetch ? t('js.sim.prefetch_started') : t('js.sim.no_prefetch_url')}`);
    } catch (err) {
      log('launch', err.errMsg);
    }
  } else {
    log('launch', t('js.sim.prefetch_off'));
  }
  await Promise.all([readData(wx, 'pre', f.prefetch.checked ? 3000 : 0), readData(wx, 'periodic', 0)]);

  program?.destroy();
  program = new MiniProgram({
    root: document.getElementById('miniapp-root'),
    title: document.getElementById('mp-title'),
    tabs: document.getElementById('miniapp-tabs'),
    pages: PAGES,
    tabBar: TAB_BAR,
    wx,
    globalData: { user, device, cart: [] },
    hooks: createHooks((name, args) => {
      if (EVALUATOR_HOOKS.has(name)) rt.analytics[name](...args);
      if (name === 'click') log('tap', `tap ${args[1]} ${describe(args[2])}`);
      else if (['pageShow', 'switchTab', 'launch'].includes(name)) log('page', `${name} ${typeof args[1] === 'string' ? args[1] : args[1]?.path ?? ''}`);
    }),
  });
  const params = Object.fromEntries(new URLSearchParams(query));
  program.launch(PAGES[f.path.value] ? f.path.value : 'pages/index/index', params, scene);
  const sys = rt.system.properties();
  log('analytics', t('js.sim.an_session', { session: String(rt.analytics.lifecycle.session ?? '').slice(0, 8),
    device: [sys.$model, sys.$platform, sys.$os_version].filter(Boolean).join(' · ') }));
  status.textContent = t('js.sim.running', { user, device, appid });
  root.dataset.launched = 'true';
}

function describe(element) {
  if (!element) return '';
  const parts = [element.id ? `#${element.id}` : '', ...element.classes.map((c) => `.${c}`)];
  return parts.filter(Boolean).join('');
}

form.addEventListener('submit', launch);
tokenForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!runtime) {
    status.textContent = t('js.sim.launch_first');
    return;
  }
  try {
    const res = await runtime.wx.setBackgroundFetchToken({ token: tokenForm.elements.token.value });
    log('token', res.errMsg);
  } catch (err) {
    log('token', err.errMsg);
  }
});
for (const button of document.querySelectorAll('[data-device]')) {
  button.addEventListener('click', () => {
    if (!program) {
      status.textContent = t('js.sim.launch_first');
      return;
    }
    program[button.dataset.device]();
    log('page', button.dataset.device);
  });
}
root.querySelector('[data-testid="sim-analytics-flush"]').addEventListener('click', () => {
  runtime?.analytics.flush();
});
document.getElementById('sim-periodic').addEventListener('click', () => {
  if (runtime) readData(runtime.wx, 'periodic', 0);
  else status.textContent = t('js.sim.launch_first');
});
restore();
