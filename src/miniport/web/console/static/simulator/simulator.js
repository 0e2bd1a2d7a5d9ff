// The simulator: a test device in the browser. It gets a runtime token for the chosen user and
// device from the admin API, runs the JavaScript runtime (/sdk/miniport-runtime.js) and the
// sample mini-program on it, and shows the background data it receives (read at launch, and
// live from onBackgroundFetchData / the devtools' push).
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
    user_id: f.user_id.value, device_id: f.device_id.value, prefetch: f.prefetch.checked,
  }));
}

function restore() {
  const values = saved();
  const f = form.elements;
  if (values.user_id) f.user_id.value = values.user_id;
  if (values.device_id) f.device_id.value = values.device_id;
  if (typeof values.prefetch === 'boolean') f.prefetch.checked = values.prefetch;
  const wanted = root.dataset.appid;
  if (wanted) f.appid.value = wanted;
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
  runtime?.close();
  status.textContent = t('js.sim.starting');
  root.dataset.launched = 'false';
  let token;
  try {
    ({ runtime_token: token } = await api('POST', '/admin/v1/runtime-tokens', { user_id: user, device_id: device }));
  } catch (error) {
    status.textContent = error.message;
    return;
  }
  runtime = createRuntime({ appid, token });
  const wx = runtime.wx;
  runtime.on('devtoolsRefresh', (message) => log('push', t('js.sim.push_received', { verdict: message.verdict ?? '' })));
  wx.onBackgroundFetchData((res) => {
    showData(res.fetchType, res, 'live');
    log('live', t('js.sim.live_data', { kind: res.fetchType }));
  });
  const connected = await waitConnected(runtime, 5000);
  log('connect', connected ? t('js.sim.connected') : t('js.sim.not_connected'));

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

  program = new MiniProgram({
    root: document.getElementById('miniapp-root'),
    title: document.getElementById('mp-title'),
    tabs: document.getElementById('miniapp-tabs'),
    pages: PAGES,
    tabBar: TAB_BAR,
    wx,
    globalData: { user, device, cart: [] },
    hooks: createHooks((name, args) => {
      if (name === 'click') log('tap', `tap ${args[1]} ${describe(args[2])}`);
      else if (['pageShow', 'switchTab', 'launch'].includes(name)) log('page', `${name} ${typeof args[1] === 'string' ? args[1] : args[1]?.path ?? ''}`);
    }),
  });
  const params = Object.fromEntries(new URLSearchParams(query));
  program.launch(PAGES[f.path.value] ? f.path.value : 'pages/index/index', params, scene);
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
document.getElementById('sim-periodic').addEventListener('click', () => {
  if (runtime) readData(runtime.wx, 'periodic', 0);
  else status.textContent = t('js.sim.launch_first');
});
restore();
