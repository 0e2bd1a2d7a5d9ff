// Data URLs page: each pending change updates live (polling the admin API) to applied,
// superseded or expired; once applied, the current settings table is refreshed.
import { api, formatTime, t } from './console.js';

const root = document.getElementById('urls-page');
const appid = root?.dataset.appid;
const POLL_MS = 1500;

function setBadge(badge, status) {
  badge.className = `badge ${status} change-status`;
  badge.textContent = t(`js.status.${status}`);
}

async function refreshSettings() {
  const app = await api('GET', `/admin/v1/apps/${encodeURIComponent(appid)}`);
  for (const [kind, setting] of Object.entries(app.urls ?? {})) {
    const row = root.querySelector(`tr[data-kind="${kind}"]`);
    if (!row) continue;
    showUrl(row.querySelector('.url-cell'), setting.url, false);
    const stateCell = row.querySelector('.state-cell');
    const badge = document.createElement('span');
    badge.className = `badge ${setting.enabled ? 'ok' : 'off'}`;
    badge.textContent = setting.enabled ? t('js.on') : t('js.off');
    stateCell.replaceChildren(badge);
    const time = row.querySelector('time');
    if (time) time.textContent = formatTime(setting.updated_at);
    refreshGrey(kind, setting);
  }
}

// a URL cell: the URL as code, or "not set" (muted in the grey table, as the page renders it)
function showUrl(cell, url, muted) {
  cell.replaceChildren();
  if (url) {
    const code = document.createElement('code');
    code.className = 'url';
    code.textContent = url;
    cell.append(code);
  } else if (muted) {
    const none = document.createElement('span');
    none.className = 'muted';
    none.textContent = t('js.not_set');
    cell.append(none);
  } else {
    cell.textContent = t('js.not_set');
  }
}

// the grey release table: a grey change (set, ratio, promote, clear) is applied like any other
function refreshGrey(kind, setting) {
  const row = root.querySelector(`tr[data-grey-kind="${kind}"]`);
  if (!row) return;
  showUrl(row.querySelector('.grey-url-cell'), setting.grey_url, true);
  row.querySelector('.grey-ratio').textContent = setting.grey_url ? `${setting.grey_ratio} %` : '';
}

async function poll() {
  const pending = [...root.querySelectorAll('[data-change-id][data-status="pending"]')];
  let applied = false;
  for (const article of pending) {
    try {
      const change = await api('GET', `/admin/v1/changes/${encodeURIComponent(article.dataset.changeId)}`);
      if (change.status === 'pending') continue;
      article.dataset.status = change.status;
      article.classList.add(`is-${change.status}`);
      setBadge(article.querySelector('.change-status'), change.status);
      const countdown = article.querySelector('time.countdown');
      if (countdown) countdown.textContent = '';
      const history = root.querySelector(`tr[data-history-id="${change.id}"]`);
      if (history) {
        const badge = history.querySelector('.history-status');
        badge.className = `badge ${change.status} history-status`;
        badge.textContent = t(`js.status.${change.status}`);
        history.querySelector('.history-decided').textContent = change.decided_by ?? '';
      }
      const qr = article.querySelector('.qr-box');
      if (qr) qr.classList.add('done');
      if (change.status === 'applied') {
        applied = true;
        const note = article.querySelector('.applied-note');
        if (note) {
          note.textContent = t('js.applied_by', { name: change.decided_by ?? '' });
          note.classList.remove('hidden');
        }
      }
    } catch (error) {
      console.warn('change status', error);
    }
  }
  if (applied) await refreshSettings().catch((error) => console.warn(error));
  if (root.querySelector('[data-change-id][data-status="pending"]')) setTimeout(poll, POLL_MS);
}

function tick() {
  const now = Date.now() / 1000;
  for (const node of root.querySelectorAll('time.countdown[data-expires]')) {
    const article = node.closest('[data-change-id]');
    if (article && article.dataset.status !== 'pending') {
      node.textContent = '';
      continue;
    }
    const left = Math.round(Number(node.dataset.expires) - now);
    if (left <= 0) {
      node.textContent = t('js.expired');
      if (article) {
        article.dataset.status = 'expired';
        setBadge(article.querySelector('.change-status'), 'expired');
        article.querySelector('.qr-box')?.classList.add('done');
      }
    } else {
      node.textContent = t('js.expires_in', { m: Math.floor(left / 60), s: String(left % 60).padStart(2, '0') });
    }
  }
}

if (root) {
  tick();
  setInterval(tick, 1000);
  setTimeout(poll, POLL_MS);
}
