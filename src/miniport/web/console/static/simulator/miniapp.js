// The sample mini-program the simulator runs: written the way WeChat mini-program pages are
// (data, onLoad/onShow, setData, tap handlers reading `currentTarget.dataset`), on `this.wx`.
import { h } from './framework.js';

const FALLBACK_GOODS = [
  { id: 'g1', name: 'Green tea', price: 12 },
  { id: 'g2', name: 'Cheesecake', price: 30 },
  { id: 'g3', name: 'Dumplings', price: 18 },
];

/** Goods from background data (a JSON body with a `goods` list), else the built-in list. */
export function goodsFrom(fetchedData) {
  try {
    const body = JSON.parse(fetchedData);
    if (Array.isArray(body.goods) && body.goods.length) {
      return body.goods.map((g, i) => ({ id: String(g.id ?? `g${i + 1}`), name: String(g.name ?? `#${i + 1}`), price: Number(g.price ?? 0) }));
    }
  } catch {
    // not JSON: keep the built-in list
  }
  return FALLBACK_GOODS;
}

export const TAB_BAR = [
  { path: 'pages/index/index', text: 'Home' },
  { path: 'pages/cart/cart', text: 'Cart' },
  { path: 'pages/me/me', text: 'Me' },
];

export const PAGES = {
  'pages/index/index': {
    title: 'Goods',
    data: { goods: FALLBACK_GOODS, greeting: '', source: 'built-in', cartCount: 0 },
    onLoad() {
      // the WeChat pattern: read the pre-fetched data at once, listen for newer data
      this.wx.getBackgroundFetchData({
        fetchType: 'pre',
        success: (res) => this.useData(res.fetchedData, 'pre'),
        fail: () => this.wx.getBackgroundFetchData({
          fetchType: 'periodic',
          success: (res) => this.useData(res.fetchedData, 'periodic'),
          fail: () => undefined,
        }),
      });
      this.listener = (res) => this.useData(res.fetchedData, res.fetchType);
      this.wx.onBackgroundFetchData(this.listener);
    },
    onUnload() {
      this.wx.offBackgroundFetchData?.(this.listener);
    },
    onShow() {
      this.setData({ cartCount: (this.app.globalData.cart ?? []).length });
    },
    useData(fetchedData, source) {
      let greeting = '';
      try {
        greeting = String(JSON.parse(fetchedData).greeting ?? '');
      } catch {
        greeting = '';
      }
      this.setData({ goods: goodsFrom(fetchedData), greeting, source });
    },
    buy(event) {
      const { id, name, price } = event.currentTarget.dataset;
      const cart = [...(this.app.globalData.cart ?? []), { id, name, price: Number(price) }];
      this.app.setAppData({ cart, cartTotal: cart.reduce((sum, g) => sum + g.price, 0) });
      this.setData({ cartCount: cart.length });
    },
    openDetail(event) {
      this.app.navigateTo('pages/detail/detail', { id: event.currentTarget.dataset.id });
    },
    render(page) {
      const { goods, greeting, source, cartCount } = page.data;
      return h('div', { class: 'mp-page' },
        greeting ? h('p', { class: 'mp-greeting', 'data-testid': 'mp-greeting' }, greeting) : null,
        h('p', { class: 'mp-source', 'data-testid': 'mp-source' }, `data: ${source} · cart: ${cartCount}`),
        h('ul', { class: 'mp-goods' }, goods.map((g, i) => h('li', { class: 'mp-item', 'data-mp-index': i },
          h('div', { class: 'mp-item-text', 'data-tap': 'openDetail', 'data-id': g.id },
            h('strong', {}, g.name), h('span', { class: 'mp-price' }, `¥${g.price}`)),
          h('button', { class: 'buy', id: `buy-${g.id}`, type: 'button', 'data-tap': 'buy', 'data-id': g.id, 'data-name': g.name, 'data-price': g.price }, 'Buy'),
        ))),
      );
    },
  },
  'pages/detail/detail': {
    title: 'Detail',
    data: { item: null },
    onLoad(query) {
      const home = this.app.stack.find((p) => p.route === 'pages/index/index');
      const goods = home?.data.goods ?? FALLBACK_GOODS;
      this.setData({ item: goods.find((g) => g.id === query.id) ?? goods[0] });
    },
    addToCart() {
      const cart = [...(this.app.globalData.cart ?? []), this.data.item];
      this.app.setAppData({ cart, cartTotal: cart.reduce((sum, g) => sum + g.price, 0) });
      this.app.navigateBack();
    },
    back() {
      this.app.navigateBack();
    },
    render(page) {
      const item = page.data.item ?? { name: '?', price: 0, id: '' };
      return h('div', { class: 'mp-page mp-detail' },
        h('h2', {}, item.name), h('p', { class: 'mp-price big' }, `¥${item.price}`),
        h('button', { class: 'add-cart primary', id: 'add-cart', type: 'button', 'data-tap': 'addToCart', 'data-id': item.id }, 'Add to cart'),
        h('button', { class: 'back', id: 'back', type: 'button', 'data-tap': 'back' }, 'Back'));
    },
  },
  'pages/cart/cart': {
    title: 'Cart',
    data: { cart: [] },
    onShow() {
      this.setData({ cart: this.app.globalData.cart ?? [] });
    },
    checkout() {
      // reported from code, as a WeChat mini-program does (an API-mode event 'checkout' with
      // int fields goods_count and total; undefined events are refused with a reason)
      const cart = this.data.cart ?? [];
      this.wx.reportAnalytics('checkout', { goods_count: cart.length, total: cart.reduce((sum, g) => sum + Number(g.price || 0), 0) });
      this.app.setAppData({ cart: [], cartTotal: 0 });
      this.setData({ cart: [] });
    },
    render(page) {
      const { cart } = page.data;
      return h('div', { class: 'mp-page' },
        cart.length ? h('ul', { class: 'mp-goods' }, cart.map((g, i) => h('li', { class: 'mp-item', 'data-mp-index': i }, h('strong', {}, g.name), h('span', { class: 'mp-price' }, `¥${g.price}`))))
          : h('p', { class: 'mp-empty' }, 'The cart is empty.'),
        h('button', { class: 'checkout primary', id: 'checkout', type: 'button', 'data-tap': 'checkout', disabled: !cart.length }, 'Checkout'));
    },
  },
  'pages/me/me': {
    title: 'Me',
    data: { token: '', login: '' },
    onShow() {
      this.wx.getBackgroundFetchToken({
        success: (res) => this.setData({ token: res.token }),
        fail: (err) => this.setData({ token: err.errMsg }),
      });
    },
    login() {
      this.wx.login().then((res) => this.setData({ login: `code ${res.code.slice(0, 8)}…` }), (err) => this.setData({ login: err.errMsg }));
    },
    render(page) {
      const { user, device } = page.app.globalData;
      return h('div', { class: 'mp-page' },
        h('dl', { class: 'mp-kv' }, h('dt', {}, 'User'), h('dd', {}, user), h('dt', {}, 'Device'), h('dd', {}, device),
          h('dt', {}, 'Fetch token'), h('dd', {}, page.data.token || '…'), h('dt', {}, 'wx.login'), h('dd', {}, page.data.login || '–')),
        h('button', { class: 'login', id: 'login', type: 'button', 'data-tap': 'login' }, 'wx.login()'));
    },
  },
};
