// A tiny mini-program page framework for the simulator: a page stack, tabs, setData, and taps
// delegated from elements with `data-tap="handler"` (WeChat's bindtap). Every lifecycle step
// and tap goes through the hooks (hooks.js) first.
import { describeElement } from './hooks.js';

export class MiniProgram {
  /**
   * @param {{root: HTMLElement, title: HTMLElement, tabs: HTMLElement, pages: Record<string, any>,
   *          tabBar: {path: string, text: string}[], hooks: Record<string, Function>,
   *          globalData?: Record<string, unknown>, wx: any, onRoute?: (path: string) => void}} options
   */
  constructor(options) {
    Object.assign(this, options);
    this.stack = [];
    this.globalData = options.globalData ?? {};
    this.root.dataset.mpRoot = '';
    this.clickListener = (event) => this.onClick(event);
    this.root.addEventListener('click', this.clickListener);
    this.renderTabs();
  }

  /** Stop handling taps (a new launch makes a new program on the same screen). */
  destroy() {
    this.root.removeEventListener('click', this.clickListener);
  }

  now() {
    return Date.now();
  }

  get current() {
    return this.stack[this.stack.length - 1] ?? null;
  }

  launch(path, query = {}, scene = 1001) {
    for (const page of [...this.stack].reverse()) this.unload(page);
    this.stack = [];
    this.hooks.launch(this.now(), { path, query, scene });
    this.open(path, query);
  }

  setAppData(patch) {
    Object.assign(this.globalData, patch);
    this.hooks.setAppData(this.now(), { ...this.globalData });
  }

  make(path, query) {
    const def = this.pages[path];
    if (!def) throw new Error(`no page ${path}`);
    const app = this;
    const page = {
      route: path,
      options: query,
      data: structuredClone(def.data ?? {}),
      def,
      setData(patch) {
        Object.assign(this.data, patch);
        app.hooks.setData(app.now(), this.route, patch);
        if (app.current === this) app.render();
      },
    };
    for (const [name, value] of Object.entries(def)) {
      if (typeof value === 'function' && name !== 'render') page[name] = value.bind(page);
    }
    page.app = app;
    page.wx = app.wx;
    return page;
  }

  open(path, query = {}) {
    const previous = this.current;
    if (previous) this.hide(previous);
    const page = this.make(path, query);
    this.stack.push(page);
    this.hooks.pageLoad(this.now(), path, structuredClone(page.data));
    page.onLoad?.(query);
    this.show(page);
  }

  show(page) {
    this.hooks.pageShow(this.now(), page.route);
    page.onShow?.();
    this.render();
    this.onRoute?.(page.route);
  }

  hide(page) {
    this.hooks.pageHide(this.now(), page.route);
    page.onHide?.();
  }

  unload(page) {
    this.hooks.pageUnload(this.now(), page.route);
    page.onUnload?.();
  }

  navigateTo(path, query = {}) {
    this.open(path, query);
  }

  navigateBack() {
    if (this.stack.length < 2) return;
    const top = this.stack.pop();
    this.hide(top);
    this.unload(top);
    this.show(this.current);
  }

  switchTab(path) {
    if (this.stack.length === 1 && this.current?.route === path) return;
    const top = this.current;
    if (top) this.hide(top);
    for (const page of [...this.stack].reverse()) this.unload(page);
    this.stack = [];
    this.hooks.switchTab(this.now(), path);
    this.open(path, {});
  }

  pullDownRefresh() {
    const page = this.current;
    if (!page) return;
    this.hooks.pullDownRefresh(this.now(), page.route);
    page.onPullDownRefresh?.();
  }

  /** The app goes to the background: the page's onHide, then the app's. */
  background() {
    if (this.inBackground) return;
    this.inBackground = true;
    const page = this.current;
    if (page) this.hide(page);
    this.hooks.background(this.now());
  }

  /** Back to the foreground: the app's onShow, then the page's. */
  foreground() {
    if (!this.inBackground) return;
    this.inBackground = false;
    this.hooks.foreground(this.now());
    const page = this.current;
    if (page) this.show(page);
  }

  /** The user shares the current page (onShareAppMessage). */
  share() {
    const page = this.current;
    this.hooks.share(this.now(), page ? page.route : null);
    page?.onShareAppMessage?.();
  }

  onClick(event) {
    const target = event.target instanceof Element ? event.target.closest('[data-tap]') : null;
    const page = this.current;
    if (!target || !page || !this.root.contains(target)) return;
    event.preventDefault();
    const element = describeElement(target);
    this.hooks.click(this.now(), page.route, element);
    const handler = page[target.getAttribute('data-tap')];
    if (typeof handler === 'function') {
      handler({ type: 'tap', currentTarget: { id: element.id, dataset: element.dataset }, target: { id: element.id, dataset: element.dataset } });
    }
  }

  render() {
    const page = this.current;
    if (!page) return;
    this.title.textContent = page.def.title ?? page.route;
    this.root.replaceChildren(page.def.render(page));
    this.root.dataset.route = page.route;
    this.renderTabs();
  }

  renderTabs() {
    const active = this.stack[0]?.route;
    this.tabs.replaceChildren(...this.tabBar.map((tab) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = tab.text;
      button.className = `tab${tab.path === active ? ' active' : ''}`;
      button.dataset.tab = tab.path;
      button.addEventListener('click', () => this.switchTab(tab.path));
      return button;
    }));
  }
}

/** h('div', {class: 'x', 'data-tap': 'go'}, ...children) for page render functions. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
