// Analytics definitions: the fields list and "add field" form, the events list with draft /
// published status, the event editor (a form for the event and its actions; the server's
// validation errors are shown next to the input at fault), save / save-and-test / publish /
// reset, and the live test panel (server-sent events from the admin API).
import { PAGE_TRIGGERS, PAGELESS_TRIGGERS } from '/sdk/evaluator.js';
import { api, ApiError, el, formatTime, t } from './console.js';

const root = document.getElementById('analytics-page');
const appid = root?.dataset.appid ?? '';
const canEdit = root?.dataset.canEdit === 'true';
const base = `/admin/v1/apps/${encodeURIComponent(appid)}/analytics`;
const initial = JSON.parse(document.getElementById('analytics-data')?.textContent || '{}');
const TESTER_KEY = 'miniport.console.tester';
const ANY_PAGE = 'ANY_PAGE';
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

let definitions = initial.definitions ?? { fields: [], events: [], version: 0 };
let tests = initial.tests ?? [];
/** the name of the saved event the editor shows (null: a new one) */
let editing = null;
/** The `revision` of the draft the form was filled from ('' for a new event): a save made on
 * a draft someone else has changed since is refused (409) instead of replacing their edit. */
let editingRevision = '';

// --- small helpers ---------------------------------------------------------------------------

/** `join_path` of the server: actions[0].data.price, data["a.b"] for a key that is not plain. */
function joinPath(...parts) {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (!PLAIN_KEY.test(part)) out += `[${JSON.stringify(part)}]`;
    else out += out ? `.${part}` : part;
  }
  return out;
}

/** The path one level up: actions[0].data.price -> actions[0].data -> actions[0] -> actions -> ''. */
function parentPath(path) {
  const match = /(\.[A-Za-z_][A-Za-z0-9_$]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])$/.exec(path);
  if (!match) return '';
  return path.slice(0, match.index);
}

function option(value, label, selected = false) {
  const node = el('option', { value, text: label });
  if (selected) node.selected = true;
  return node;
}

function input(attrs) {
  const node = document.createElement('input');
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'value') node.value = value;
    else if (key === 'checked') node.checked = Boolean(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  return node;
}

function errorSlot(path) {
  return el('span', { class: 'field-error', 'data-error-for': path });
}

function clearErrors(scope) {
  for (const slot of scope.querySelectorAll('[data-error-for]')) {
    slot.textContent = '';
    if (slot.classList.contains('form-error')) slot.classList.add('hidden');
  }
  for (const node of scope.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
}

/**
 * Show each error next to the input at fault: the slot for its path, else for the nearest
 * enclosing path (actions[0].data.price -> actions[0].data -> actions[0] -> actions), else the
 * form's general slot.
 */
function showErrors(scope, errors) {
  clearErrors(scope);
  for (const error of errors) {
    let path = String(error.path ?? '');
    let slot = null;
    for (;;) {
      slot = scope.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
      if (slot || !path) break;
      path = parentPath(path);
    }
    if (!slot) continue;
    const text = path === String(error.path ?? '') || !error.path ? error.message : `${error.path}: ${error.message}`;
    slot.textContent = slot.textContent ? `${slot.textContent} · ${text}` : text;
    slot.classList.remove('hidden');
    const field = scope.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (field) field.setAttribute('aria-invalid', 'true');
  }
  const first = scope.querySelector('[aria-invalid="true"]');
  first?.focus?.({ preventScroll: false });
}

/** Errors of an admin API failure as [{path, message}]. */
function errorsOf(error) {
  if (error instanceof ApiError && Array.isArray(error.body?.errors)) return error.body.errors;
  return [{ path: '', message: error.message ?? String(error) }];
}

function statusOf(event) {
  if (event.draft === null && event.published !== null) return ['deleted', 'bad'];
  if (event.published === null) return ['draft', 'pending'];
  if (event.changed) return ['changed', 'pending'];
  return ['published', 'ok'];
}

function badge(kind, text, extra = {}) {
  return el('span', { class: `badge ${kind}`, text, ...extra });
}

// --- fields and events lists -----------------------------------------------------------------

const FIELD_TYPES = ['int', 'string', 'float', 'bool'];

/** "string until 2026-11-30 01:00 → int": a retyped field's parts, oldest first. */
function typeHistory(f) {
  const parts = f.history ?? [];
  return parts.map((part, i) => {
    const until = parts[i + 1]?.since_ms;
    return until ? t('js.an.type_until', { type: part.type, time: formatTime(until, { ms: true }) }) : part.type;
  }).join(' → ');
}

function renderFields() {
  const body = document.querySelector('[data-testid="fields-table"] tbody');
  body.replaceChildren(...definitions.fields.map((f) => {
    const type = el('td', { title: f.type }, el('span', { text: t(`js.type.${f.type}`) }));
    if (f.pending_type) {
      type.append(' ', badge('pending', t('js.an.retype_pending', { type: f.pending_type }), { 'data-testid': `pending-${f.name}` }));
    }
    if ((f.history ?? []).length > 1) {
      type.append(el('div', { class: 'muted small', 'data-testid': `history-${f.name}`, text: t('js.an.type_was', { history: typeHistory(f) }) }));
    }
    const cells = [
      el('td', {}, el('code', { text: f.name })),
      type,
      el('td', {}, f.published ? badge('ok', t('js.an.status.published')) : badge('pending', t('js.an.status.draft'))),
    ];
    if (canEdit) {
      const change = el('button', { type: 'button', class: 'small', text: t('js.an.retype'), 'data-testid': `retype-${f.name}` });
      change.addEventListener('click', () => openRetype(f, change.closest('tr')));
      cells.push(el('td', { class: 'row-buttons' }, change));
    }
    return el('tr', { 'data-field': f.name }, ...cells);
  }));
  if (!definitions.fields.length) body.append(el('tr', {}, el('td', { colSpan: canEdit ? 4 : 3, class: 'muted', text: t('js.an.no_fields') })));
}

/** The inline "change type" form under a field's row: a type, apply, cancel; errors beside it. */
function openRetype(f, row) {
  document.querySelector('tr.retype-row')?.remove();
  const select = el('select', { name: 'type', 'data-path': 'type', 'aria-label': t('an.type'), 'data-testid': 'retype-type' });
  const shown = f.pending_type ?? f.type;
  for (const type of FIELD_TYPES) select.append(option(type, t(`js.type.${type}`), type !== shown && type === FIELD_TYPES.find((x) => x !== shown)));
  const apply = el('button', { type: 'submit', class: 'small primary', text: t('js.an.retype_apply'), 'data-testid': 'retype-apply' });
  const cancel = el('button', { type: 'button', class: 'small link', text: t('js.an.cancel') });
  const out = el('span', { class: 'small result', 'aria-live': 'polite', 'data-testid': 'retype-result' });
  const form = el('form', { class: 'stack retype-form', noValidate: true, 'data-testid': 'retype-form' },
    el('p', { class: 'muted small', text: f.published ? t('js.an.retype_help_published') : t('js.an.retype_help_draft') }),
    el('div', { class: 'row' }, select, apply, cancel, out),
    errorSlot('type'), errorSlot('name'), errorSlot(''));
  cancel.addEventListener('click', () => form.closest('tr').remove());
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const done = await api('POST', `${base}/fields/${encodeURIComponent(f.name)}/retype`, { type: select.value });
      await refresh();
      const message = done.status === 'cancelled' ? t('js.an.retype_cancelled', { name: f.name })
        : done.status === 'pending publish' ? t('js.an.retype_pending_done', { name: f.name, type: done.pending_type })
          : t('js.an.retype_done', { name: f.name, type: done.type });
      const result = document.querySelector('#fields-card .retype-said') ?? el('p', { class: 'small ok retype-said', 'data-testid': 'retype-said', 'aria-live': 'polite' });
      result.textContent = message;
      document.querySelector('[data-testid="fields-table"]').after(result);
    } catch (error) {
      showErrors(form, errorsOf(error));
    }
  });
  row.after(el('tr', { class: 'retype-row' }, el('td', { colSpan: 4 }, form)));
  select.focus();
}

function renderEvents() {
  const body = document.querySelector('[data-testid="events-table"] tbody');
  body.replaceChildren(...definitions.events.map((event) => {
    const shown = event.draft ?? event.published ?? {};
    const [status, kind] = statusOf(event);
    const cells = [
      el('td', {}, el('code', { text: event.name })),
      el('td', { text: shown.display_name ?? '' }),
      el('td', { text: t(`js.an.mode.${shown.mode ?? 'api'}`) }),
      el('td', {}, badge(kind, t(`js.an.status.${status}`), { 'data-status': status })),
    ];
    const buttons = el('td', { class: 'row-buttons' });
    if (canEdit) {
      if (event.draft !== null) {
        const edit = el('button', { type: 'button', class: 'small', text: t('js.an.edit') });
        edit.dataset.testid = `edit-${event.name}`;
        edit.addEventListener('click', () => loadEvent(event.name));
        const remove = el('button', { type: 'button', class: 'small danger', text: t('js.an.delete') });
        remove.addEventListener('click', () => deleteEvent(event.name));
        buttons.append(edit, ' ', remove);
      }
    }
    cells.push(buttons);
    return el('tr', { 'data-event': event.name, 'data-status': status }, ...cells);
  }));
  if (!definitions.events.length) body.append(el('tr', {}, el('td', { colSpan: 5, class: 'muted', text: t('js.an.no_events') })));
  const version = document.querySelector('[data-testid="published-version"]');
  version.textContent = definitions.version ? t('js.an.version', { n: definitions.version }) : t('js.an.never_published');
  version.dataset.version = String(definitions.version ?? 0);
}

function renderTests() {
  const list = document.querySelector('[data-testid="tests-list"]');
  list.replaceChildren(...tests.map((test) => {
    const open = el('button', { type: 'button', class: 'link', text: test.test_id });
    open.addEventListener('click', () => openTest(test.test_id));
    return el('li', { 'data-test': test.test_id }, open, ' · ', test.user_id, ' · ',
      badge(test.status === 'running' ? 'live' : 'off', t(`js.an.test.${test.status === 'running' ? 'running' : 'stopped'}`)),
      test.synced_at ? ` · ${t('js.an.test.synced_at', { time: formatTime(test.synced_at) })}` : '',
      ` · ${formatTime(test.started_at)}`);
  }));
  if (!tests.length) list.append(el('li', { class: 'muted', text: t('js.an.test.none') }));
}

async function refresh() {
  const [defs, listed] = await Promise.all([api('GET', `${base}/definitions`), api('GET', `${base}/tests`)]);
  definitions = defs;
  tests = listed.tests.slice(0, 10);
  renderFields();
  renderEvents();
  renderTests();
  if (canEdit) renderFieldPicker();
}

// --- add a field ---------------------------------------------------------------------------------

function wireFieldForm() {
  const form = document.getElementById('field-form');
  if (!form) return;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = form.querySelector('.result');
    const body = { name: form.elements.name.value.trim(), type: form.elements.type.value };
    clearErrors(form);
    out.textContent = '';
    try {
      await api('POST', `${base}/fields`, body);
      out.textContent = t('js.an.field_added', { name: body.name });
      form.elements.name.value = '';
      await refresh();
    } catch (error) {
      showErrors(form, errorsOf(error));
    }
  });
}

// --- the event editor ----------------------------------------------------------------------------

const form = document.getElementById('event-form');
const actionsList = form?.querySelector('.actions-list');
const editorResult = document.querySelector('[data-testid="editor-result"]');

function say(text, kind = 'ok') {
  if (!editorResult) return;
  editorResult.textContent = text;
  editorResult.dataset.kind = kind;
}

function chosenFields() {
  return [...form.querySelectorAll('.field-picker input[type=checkbox]:checked')].map((box) => box.value);
}

function renderFieldPicker(selected = chosenFields()) {
  const box = form.querySelector('.field-picker .checks');
  box.replaceChildren(...definitions.fields.map((f) => {
    const check = input({ type: 'checkbox', name: 'fields', value: f.name, checked: selected.includes(f.name),
      'data-testid': `ev-field-${f.name}` });
    check.addEventListener('change', () => syncSourceFields());
    return el('label', { class: 'check', 'data-field': f.name }, check, el('code', { text: f.name }),
      el('span', { class: 'muted small', text: t(`js.type.${f.type}`) }), el('span', { class: 'field-error' }));
  }));
  form.querySelector('.no-fields').classList.toggle('hidden', definitions.fields.length > 0);
}

/** `fields[k]` of the definition is the k-th checked field: point the error slots there. */
function numberFieldSlots() {
  let k = 0;
  for (const label of form.querySelectorAll('.field-picker label[data-field]')) {
    const slot = label.querySelector('.field-error');
    const box = label.querySelector('input');
    if (box.checked) {
      slot.dataset.errorFor = `fields[${k}]`;
      box.dataset.path = `fields[${k}]`;
      k += 1;
    } else {
      delete slot.dataset.errorFor;
      delete box.dataset.path;
    }
  }
}

/** The actions as the editor holds them (before they become the definition's actions). */
function readActions() {
  return [...actionsList.children].map((item) => ({
    trigger: item.querySelector('[name=trigger]').value,
    action: item.querySelector('[name=action]').value,
    page: item.querySelector('[name=page]').value,
    anyPage: item.querySelector('[name=any_page]').checked,
    element: item.querySelector('[name=element]').value,
    data: [...item.querySelectorAll('.source-row')].map((row) => [
      row.querySelector('[name=source_field]').value, row.querySelector('[name=source]').value]),
  }));
}

function fromDefinition(action) {
  return {
    trigger: action.trigger ?? 'click',
    action: action.action ?? 'report',
    page: action.page && action.page !== ANY_PAGE ? action.page : '',
    anyPage: action.page === ANY_PAGE,
    element: action.element ?? '',
    data: Object.entries(action.data ?? {}),
  };
}

function renderActions(actions) {
  actionsList.replaceChildren(...actions.map((action, i) => actionItem(action, i)));
}

function changeActions(mutate) {
  const actions = readActions();
  mutate(actions);
  renderActions(actions);
}

function triggerSelect(value, path) {
  const select = el('select', { name: 'trigger', 'data-path': path });
  const groups = [['js.an.triggers_page', PAGE_TRIGGERS], ['js.an.triggers_app', PAGELESS_TRIGGERS]];
  for (const [label, names] of groups) {
    const group = el('optgroup', { label: t(label) });
    for (const name of names) group.append(option(name, `${name} — ${t(`js.an.trigger.${name}`)}`, name === value));
    select.append(group);
  }
  return select;
}

function sourceRow(i, field, source) {
  const fields = chosenFields();
  const path = field ? joinPath('actions', i, 'data', field) : joinPath('actions', i, 'data');
  const select = el('select', { name: 'source_field', 'aria-label': t('js.an.field') });
  select.append(option('', t('js.an.pick_field')));
  for (const name of new Set([...fields, ...(field ? [field] : [])])) select.append(option(name, name, name === field));
  const text = input({ name: 'source', value: source, list: 'source-suggestions', placeholder: 'goods[].price · $DATASET.color',
    'aria-label': t('js.an.source'), 'data-path': path, maxlength: 256, autocomplete: 'off' });
  const remove = el('button', { type: 'button', class: 'small', text: '✕', title: t('js.an.remove_source') });
  const row = el('div', { class: 'source-row', 'data-field': field }, select, el('span', { class: 'arrow', text: '←' }), text, remove,
    errorSlot(path));
  select.addEventListener('change', () => {
    const newPath = select.value ? joinPath('actions', i, 'data', select.value) : joinPath('actions', i, 'data');
    text.dataset.path = newPath;
    row.querySelector('.field-error').dataset.errorFor = newPath;
    row.dataset.field = select.value;
  });
  remove.addEventListener('click', () => row.remove());
  return row;
}

/** Keep each source row's field choices in step with the event's fields. */
function syncSourceFields() {
  const fields = chosenFields();
  for (const select of form.querySelectorAll('[name=source_field]')) {
    const current = select.value;
    select.replaceChildren(option('', t('js.an.pick_field')),
      ...[...new Set([...fields, ...(current ? [current] : [])])].map((name) => option(name, name, name === current)));
  }
}

function actionItem(action, i) {
  const p = (key) => `actions[${i}].${key}`;
  const trigger = triggerSelect(action.trigger, p('trigger'));
  const kind = el('select', { name: 'action', 'data-path': p('action') },
    option('report', t('js.an.action.report'), action.action === 'report'),
    option('start', t('js.an.action.start'), action.action === 'start'));
  const page = input({ name: 'page', value: action.page, list: 'page-suggestions', placeholder: 'pages/index/index',
    'data-path': p('page'), maxlength: 256, autocomplete: 'off', disabled: action.anyPage });
  const anyPage = input({ type: 'checkbox', name: 'any_page', checked: action.anyPage });
  const element = input({ name: 'element', value: action.element, placeholder: '.buy · #pay', 'data-path': p('element'),
    maxlength: 64, autocomplete: 'off' });
  anyPage.addEventListener('change', () => {
    page.disabled = anyPage.checked;
  });
  const pageWrap = el('div', { class: 'page-wrap' },
    el('label', {}, t('js.an.page'), page, el('span', { class: 'check small' }, anyPage, ' ', t('js.an.any_page'))),
    errorSlot(p('page')));
  const elementWrap = el('div', { class: 'element-wrap' }, el('label', {}, t('js.an.element'), element), errorSlot(p('element')));
  const showFor = () => {
    pageWrap.classList.toggle('hidden', !PAGE_TRIGGERS.includes(trigger.value));
    elementWrap.classList.toggle('hidden', trigger.value !== 'click');
  };
  trigger.addEventListener('change', showFor);

  const sources = el('div', { class: 'sources' });
  for (const [field, source] of action.data) sources.append(sourceRow(i, field, source));
  const addSource = el('button', { type: 'button', class: 'small add-source', text: t('js.an.add_source') });
  addSource.addEventListener('click', () => {
    const free = chosenFields().find((name) => ![...sources.querySelectorAll('[name=source_field]')].some((s) => s.value === name));
    sources.append(sourceRow(i, free ?? '', ''));
  });

  const up = el('button', { type: 'button', class: 'small', text: '↑', title: t('js.an.move_up'), disabled: i === 0 });
  up.addEventListener('click', () => changeActions((list) => list.splice(i - 1, 0, ...list.splice(i, 1))));
  const remove = el('button', { type: 'button', class: 'small danger', text: t('js.an.remove_action') });
  remove.addEventListener('click', () => changeActions((list) => list.splice(i, 1)));

  const item = el('li', { class: 'action', 'data-index': String(i) },
    el('div', { class: 'action-head' }, el('strong', { text: t('js.an.action_n', { n: i + 1 }) }),
      el('span', { class: 'row' }, up, remove)),
    errorSlot(`actions[${i}]`),
    el('div', { class: 'action-grid' },
      el('div', {}, el('label', {}, t('js.an.trigger'), trigger), errorSlot(p('trigger'))),
      el('div', {}, el('label', {}, t('js.an.action'), kind), errorSlot(p('action'))),
      pageWrap, elementWrap),
    el('div', { class: 'sources-head' }, el('span', { text: t('js.an.data_sources') }), errorSlot(p('data'))),
    sources, addSource);
  item.dataset.testid = `action-${i}`;
  showFor();
  return item;
}

function showMode() {
  const configured = form.elements.mode.value === 'configured';
  form.querySelector('.actions-block').classList.toggle('hidden', !configured);
  form.querySelector('.api-help').classList.toggle('hidden', configured);
}

/** The event definition the form describes (docs/analytics-definitions.md). */
function collect() {
  const definition = {
    name: form.elements.name.value.trim(),
    display_name: form.elements.display_name.value.trim(),
    mode: form.elements.mode.value,
    fields: chosenFields(),
  };
  if (definition.mode !== 'configured') return definition;
  definition.actions = readActions().map((a) => {
    const out = { trigger: a.trigger, action: a.action };
    if (PAGE_TRIGGERS.includes(a.trigger)) {
      const page = a.anyPage ? ANY_PAGE : a.page.trim();
      if (page) out.page = page;
    }
    if (a.trigger === 'click' && a.element.trim()) out.element = a.element.trim();
    const data = {};
    for (const [field, source] of a.data) if (field) data[field] = source.trim();
    if (Object.keys(data).length) out.data = data;
    return out;
  });
  return definition;
}

function fill(definition, name, revision = '') {
  editing = name;
  editingRevision = revision;
  clearErrors(form);
  form.elements.name.value = definition.name ?? '';
  form.elements.name.readOnly = Boolean(name);
  form.elements.display_name.value = definition.display_name ?? '';
  form.elements.mode.value = definition.mode ?? 'configured';
  renderFieldPicker(definition.fields ?? []);
  renderActions((definition.actions ?? []).map(fromDefinition));
  if (!definition.actions?.length && form.elements.mode.value === 'configured') renderActions([fromDefinition({})]);
  showMode();
  const label = document.querySelector('[data-testid="editing"]');
  label.textContent = name ? t('js.an.editing', { name }) : t('js.an.new');
}

function loadEvent(name) {
  const event = definitions.events.find((e) => e.name === name);
  if (!event) return;
  fill(event.draft ?? event.published ?? {}, name, event.revision ?? '');
  say('');
  document.getElementById('editor').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

async function save() {
  const definition = collect();
  numberFieldSlots();
  clearErrors(form);
  say(t('js.working'), 'busy');
  try {
    const saved = await api('POST', `${base}/events?base=${encodeURIComponent(editingRevision)}`, definition);
    editingRevision = saved.revision;
    say(t('js.an.saved', { name: saved.name }));
    await refresh();
    editing = saved.name;
    form.elements.name.readOnly = true;
    document.querySelector('[data-testid="editing"]').textContent = t('js.an.editing', { name: saved.name });
    return true;
  } catch (error) {
    showErrors(form, errorsOf(error));
    say(t('js.an.not_saved'), 'bad');
    return false;
  }
}

function askTester() {
  const dialog = document.getElementById('tester-dialog');
  const field = dialog.querySelector('input[name=user_id]');
  field.value = localStorage.getItem(TESTER_KEY) ?? '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const user = field.value.trim();
      resolve(dialog.returnValue === 'start' && user ? user : null);
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
    field.focus();
  });
}

async function saveAndTest() {
  if (!(await save())) return;
  const user = await askTester();
  if (!user) return;
  localStorage.setItem(TESTER_KEY, user);
  try {
    const started = await api('POST', `${base}/tests`, { user_id: user });
    say(t('js.an.test.started', { n: started.devices.length, user }));
    await refresh();
    openTest(started.test_id, user);
  } catch (error) {
    showErrors(form, errorsOf(error));
    say(t('js.an.test.not_started'), 'bad');
  }
}

async function publish() {
  if (!window.confirm(t('js.an.publish_confirm'))) return;
  clearErrors(form);
  say(t('js.working'), 'busy');
  try {
    const { version } = await api('POST', `${base}/publish`);
    say(t('js.an.published', { n: version }));
    await refresh();
  } catch (error) {
    // paths of the whole configuration (events[2].actions[0]...): shown in the general slot
    showErrors(form, errorsOf(error).map((e) => ({ path: '', message: e.path ? `${e.path}: ${e.message}` : e.message })));
    say(t('js.an.not_published'), 'bad');
  }
}

async function reset() {
  if (!window.confirm(t('js.an.reset_confirm'))) return;
  say(t('js.working'), 'busy');
  try {
    definitions = await api('POST', `${base}/reset`);
    await refresh();
    if (editing && definitions.events.some((e) => e.name === editing && e.draft)) loadEvent(editing);
    else fill({ mode: 'configured' }, null);
    say(t('js.an.reset_done'));
  } catch (error) {
    say(error.message, 'bad');
  }
}

async function deleteEvent(name) {
  if (!window.confirm(t('js.an.delete_confirm', { name }))) return;
  try {
    await api('DELETE', `${base}/events/${encodeURIComponent(name)}`);
    await refresh();
    if (editing === name) fill({ mode: 'configured' }, null);
    say(t('js.an.deleted', { name }));
  } catch (error) {
    say(error.message, 'bad');
  }
}

function wireEditor() {
  if (!form) return;
  form.elements.mode.addEventListener('change', () => {
    if (form.elements.mode.value === 'configured' && !actionsList.children.length) renderActions([fromDefinition({})]);
    showMode();
  });
  form.querySelector('.add-action').addEventListener('click', () => changeActions((list) => list.push(fromDefinition({}))));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (event.submitter?.dataset.op === 'test') saveAndTest();
    else save();
  });
  form.querySelector('[data-op=publish]').addEventListener('click', publish);
  form.querySelector('[data-op=reset]').addEventListener('click', reset);
  document.querySelector('[data-testid="new-event"]').addEventListener('click', () => {
    fill({ mode: 'configured' }, null);
    say('');
    form.elements.name.focus();
  });
  fill({ mode: 'configured' }, null);
}

// --- the live test panel ---------------------------------------------------------------------------

const panel = document.getElementById('test-panel');
let source = null;
let current = null;

function setState(state) {
  panel.dataset.state = state;
  const node = panel.querySelector('.test-state');
  node.className = `badge test-state ${state === 'live' ? 'live' : state === 'stopped' ? 'off' : 'pending'}`;
  node.textContent = t(`js.an.test.state.${state}`);
  for (const button of panel.querySelectorAll('[data-testid="test-stop"]')) button.disabled = state === 'stopped' || state === 'closed';
}

function note(text) {
  panel.querySelector('.test-note').textContent = text;
}

function chips(entries, kind) {
  return entries.map(([key, value]) => el('span', { class: `chip ${kind}` }, el('b', { text: key }), ' ', String(value)));
}

function addReport(report) {
  const body = panel.querySelector('tbody');
  body.querySelector('tr.empty')?.remove();
  const rows = [];
  for (const ev of report.accepted ?? []) {
    const notes = (ev.coercions ?? []).map((c) => [c.field, c.note]);
    if (ev.time_estimated) notes.push(['ts', t('js.an.time_estimated')]);
    rows.push(el('tr', { class: 'accepted', 'data-event': ev.event_name, 'data-uid': ev.uid },
      el('td', { text: formatTime(ev.ts_ms, { ms: true }) }),
      el('td', {}, el('strong', { text: ev.event_name })),
      el('td', {}, ev.page ? el('code', { text: ev.page }) : el('span', { class: 'muted', text: '—' })),
      el('td', { text: ev.trigger ?? t('js.an.from_code') }),
      el('td', { text: ev.action ?? '—' }),
      el('td', { class: 'values' }, ...chips(Object.entries(ev.values ?? {}), 'value')),
      el('td', { class: 'notes' }, ...chips(notes, 'note')),
    ));
  }
  for (const bad of report.rejected ?? []) {
    rows.push(el('tr', { class: 'rejected', 'data-code': bad.code ?? '' },
      el('td', { text: formatTime(report.received_ms, { ms: true }) }),
      el('td', {}, badge('bad', t('js.an.rejected'))),
      el('td', { colSpan: 4, class: 'muted small', text: bad.id ? `id ${bad.id}` : `#${bad.index}` }),
      el('td', { class: 'error-cell' }, bad.reason, bad.code ? el('span', { class: 'muted small', text: ` (${bad.code})` }) : null),
    ));
  }
  body.prepend(...rows.reverse());
  const count = Number(panel.dataset.count || 0) + (report.accepted ?? []).length;
  panel.dataset.count = String(count);
}

function closeSource() {
  source?.close();
  source = null;
}

async function openTest(testId, user = null) {
  closeSource();
  current = testId;
  panel.classList.remove('hidden');
  panel.dataset.test = testId;
  panel.dataset.count = '0';
  panel.querySelector('.test-id').textContent = testId;
  panel.querySelector('tbody').replaceChildren(el('tr', { class: 'empty' },
    el('td', { colSpan: 7, class: 'muted', text: t('js.an.test.waiting') })));
  note('');
  setState('connecting');
  const url = new URL(window.location.href);
  url.searchParams.set('test', testId);
  window.history.replaceState(null, '', url);
  let info = null;
  try {
    info = await api('GET', `${base}/tests/${encodeURIComponent(testId)}`);
  } catch (error) {
    note(error.message);
    setState('stopped');
    return;
  }
  if (current !== testId) return;
  const tester = user ?? info.user_id;
  panel.querySelector('.test-user').textContent = t('js.an.test.for_user', { user: tester });
  const sim = panel.querySelector('[data-testid="test-open-sim"]');
  if (sim) sim.href = `/console/simulator?${new URLSearchParams({ appid, user: tester })}`;
  if (info.status !== 'running') {
    setState('stopped');
    return;
  }
  source = new EventSource(`${base}/tests/${encodeURIComponent(testId)}/events`);
  source.addEventListener('connected', () => setState('live'));
  source.addEventListener('testReport', (event) => addReport(JSON.parse(event.data)));
  source.addEventListener('testStopped', () => {
    setState('stopped');
    closeSource();
  });
  source.addEventListener('unauthorized', () => {
    // the access that opened it is gone: the server ended the stream, a reconnect is refused
    closeSource();
    setState('closed');
    note(t('js.access_gone'));
  });
  source.onerror = () => {
    if (panel.dataset.state !== 'stopped' && panel.dataset.state !== 'closed') setState('connecting');
  };
  panel.scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function wirePanel() {
  panel.querySelector('[data-testid="test-close"]').addEventListener('click', () => {
    closeSource();
    current = null;
    panel.classList.add('hidden');
    panel.dataset.state = 'closed';
    const url = new URL(window.location.href);
    url.searchParams.delete('test');
    window.history.replaceState(null, '', url);
  });
  panel.querySelector('[data-testid="test-sync"]')?.addEventListener('click', async () => {
    if (!current) return;
    try {
      const { synced } = await api('POST', `${base}/tests/${encodeURIComponent(current)}/sync`);
      const link = el('a', { href: `/console/apps/${encodeURIComponent(appid)}/analytics/reports`, text: t('js.an.open_reports') });
      link.dataset.testid = 'open-reports';
      panel.querySelector('.test-note').replaceChildren(t('js.an.test.synced', { n: synced }), ' ', link);
      panel.dataset.synced = String(synced);
      await refresh();
    } catch (error) {
      note(error.message);
    }
  });
  panel.querySelector('[data-testid="test-stop"]')?.addEventListener('click', async () => {
    if (!current) return;
    try {
      await api('POST', `${base}/tests/${encodeURIComponent(current)}/stop`);
      setState('stopped');
      closeSource();
      note(t('js.an.test.stopped_note'));
      await refresh();
    } catch (error) {
      note(error.message);
    }
  });
}

if (root) {
  renderFields();
  renderEvents();
  renderTests();
  wireFieldForm();
  wireEditor();
  wirePanel();
  if (initial.open_test) openTest(initial.open_test);
  window.addEventListener('pagehide', closeSource);
  root.dataset.ready = 'true';
}
