// A mini-program's app.js as WeChat developers write it (globals `wx` and `App` only): what real
// code does first. wx-base.test.mjs runs it in a sandbox holding nothing but the runtime's `wx`.
const base = wx.getAppBaseInfo();
const canShare = wx.canIUse('getSystemInfoSync.return.screenWidth');
const useNewApis = wx.canIUse('getWindowInfo') && wx.canIUse('getDeviceInfo');

App({
  globalData: { sdk: base.SDKVersion, language: base.language, canShare },
  onLaunch(options) {
    const device = useNewApis ? wx.getDeviceInfo() : wx.getSystemInfoSync();
    const { windowWidth, windowHeight } = useNewApis ? wx.getWindowInfo() : wx.getSystemInfoSync();
    const account = wx.getAccountInfoSync();
    const launches = (wx.getStorageSync('launches') || 0) + 1;
    wx.setStorageSync('launches', launches);
    Object.assign(this.globalData, {
      platform: device.platform, model: device.model, windowWidth, windowHeight,
      env: account.miniProgram.envVersion, version: account.miniProgram.version, launches,
      scene: options.scene,
    });
    wx.getNetworkType({
      success: (res) => { this.globalData.network = res.networkType; },
    });
    wx.onNetworkStatusChange((res) => { this.globalData.network = res.isConnected ? res.networkType : 'none'; });
    wx.getStorage({
      key: 'profile',
      success: (res) => { this.globalData.profile = res.data; },
      fail: (err) => { this.globalData.profileError = err.errMsg; },
    });
  },
});
