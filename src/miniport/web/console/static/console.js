// Shared by every console page: the UI text catalog, admin API calls with the CSRF header,
// local times, and small page behaviours (copy, reveal, confirm-before-submit).

const catalog = JSON.parse(document.getElementById('mp-i18n')?.textContent || '{}');

/** The page's CSRF token (sent as X-CSRF-Token on every state-changing call). */
export const csrfToken = () =>
  document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';

/**
 * UI text from the page's language catalog; `{name}` placeholders filled from `params`, in one
 * pass and as they are: a value is never read again (a name with `{user}` in it, or `$'` and
 * `$$`, which replaceAll reads as patterns: "Top $$ spenders" was shown "Top $ spenders").
 */
export function t(key, params = {}) {
  const text = catalog[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (
    Object.hasOwn(params, name) ? String(params[name]) : whole));
}

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Call the admin API with the session cookie (and the CSRF header unless GET). */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.message ?? data?.detail ?? `HTTP ${response.status}`;
    throw new ApiError(String(message), response.status, data);
  }
  return data;
}

const pad = (n) => String(n).padStart(2, '0');

/** Unix seconds (or ms with `ms`) as local `YYYY-MM-DD HH:MM:SS`. */
export function formatTime(value, { ms = false, short = false } = {}) {
  if (value === null || value === undefined || value === '') return '';
  const d = new Date(ms ? value : value * 1000);
  if (Number.isNaN(d.getTime())) return '';
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (short) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}:${pad(d.getSeconds())}`;
}

/** Make an element: el('td', {class: 'x'}, 'text', child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-') || key.startsWith('aria-')) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A verdict badge ('cached' is good, 'not_modified' is good, anything else is bad). */
export function verdictBadge(verdict) {
  const good = verdict === 'cached' || verdict === 'not_modified';
  const label = catalog[`js.verdict.${verdict}`] ?? verdict;
  return el('span', { class: `badge ${good ? 'ok' : 'bad'}`, text: label, title: verdict,
    'data-verdict': verdict });
}

function localizeTimes(root = document) {
  for (const node of root.querySelectorAll('time[datetime]')) {
    const iso = node.getAttribute('datetime');
    if (!iso || node.classList.contains('countdown')) continue;
    const d = new Date(iso);
    if (!Number.isNaN(d.getTime())) {
      node.textContent = formatTime(d.getTime(), { ms: true });
      node.title = iso;
    }
  }
}

function wire() {
  localizeTimes();
  for (const button of document.querySelectorAll('button.copy[data-copy]')) {
    button.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.textContent = t('js.copied');
      } catch {
        button.textContent = t('js.copy_failed');
      }
    });
  }
  for (const button of document.querySelectorAll('button.reveal')) {
    button.addEventListener('click', () => {
      const secret = button.parentElement.querySelector('.secret');
      if (!secret) return;
      const masked = secret.classList.toggle('masked');
      secret.textContent = masked ? '••••••••••••••••' : secret.dataset.secret;
      button.textContent = masked ? t('js.reveal') : t('js.hide');
    });
  }
  for (const form of document.querySelectorAll('form.confirm-first')) {
    form.addEventListener('submit', (event) => {
      if (!window.confirm(form.dataset.confirm || t('js.are_you_sure'))) event.preventDefault();
    });
  }
  for (const select of document.querySelectorAll('select.autosubmit')) {
    select.addEventListener('change', () => select.form.submit());
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
else wire();
