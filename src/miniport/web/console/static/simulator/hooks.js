// The mini-program's lifecycle and tap events, in ONE place. The simulator's page framework
// calls these with the time (ms) first, in the shapes of the codeless analytics evaluator
// (/sdk/evaluator.js: launch, pageLoad, pageShow, pageHide, pageUnload, setData, setAppData,
// click, switchTab, pullDownRefresh, background, foreground, share). The analytics runtime plugs
// in here: give `createHooks` a sink that feeds an Evaluator and reports what it emits.

export const HOOK_NAMES = Object.freeze([
  'launch', 'background', 'foreground', 'share', 'pageLoad', 'pageShow', 'pageHide',
  'pageUnload', 'setData', 'setAppData', 'click', 'switchTab', 'pullDownRefresh',
]);

/**
 * @param {(name: string, args: unknown[]) => void} sink called for every hook, in order
 * @returns {Record<string, (...args: unknown[]) => void>}
 */
export function createHooks(sink) {
  const hooks = {};
  for (const name of HOOK_NAMES) {
    hooks[name] = (...args) => {
      try {
        sink(name, args);
      } catch (error) {
        console.error(`hook ${name}`, error);
      }
    };
  }
  return hooks;
}

/**
 * The element descriptor the evaluator matches selectors and `$DATASET` / `list[]` sources
 * against: id, classes, data-* (camelCased, as WeChat's dataset) and the indexes of the
 * enclosing list items (outermost first).
 * @param {Element} node
 */
export function describeElement(node) {
  const dataset = {};
  for (const [key, value] of Object.entries(node instanceof HTMLElement ? node.dataset : {})) {
    if (key === 'tap' || key.startsWith('mp')) continue;
    dataset[key] = value;
  }
  const indexes = [];
  for (let up = node; up; up = up.parentElement) {
    if (up instanceof HTMLElement && up.dataset.mpIndex !== undefined) indexes.unshift(Number(up.dataset.mpIndex));
    if (up instanceof HTMLElement && up.dataset.mpRoot !== undefined) break;
  }
  return { id: node.id || null, classes: [...node.classList], dataset, indexes };
}
