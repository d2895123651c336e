// A stand-in for the 'electron' module, just enough for dist/electron/main.js to start in plain
// Node (the Electron binary cannot run in CI/containers). It records what main registers (IPC
// handlers, window options, navigation guards) so main-bundle.test.ts can exercise them.
import { pathToFileURL } from 'node:url';

export const state = {
  userData: process.env.FAKE_ELECTRON_USER_DATA ?? '',
  appHandlers: new Map(),
  ipcHandlers: new Map(),
  windows: [],
  contents: [],
  permissionHandler: null,
  opened: [],
  quitCalls: 0,
};

class FakeWebContents {
  constructor() {
    this.mainFrame = { url: 'about:blank' };
    this.sent = [];
    this.handlers = new Map();
    this.windowOpenHandler = null;
  }
  send(...args) {
    this.sent.push(args);
  }
  on(name, fn) {
    this.handlers.set(name, fn);
  }
  setWindowOpenHandler(fn) {
    this.windowOpenHandler = fn;
  }
}

export class BrowserWindow {
  static all = [];
  static getAllWindows() {
    return BrowserWindow.all;
  }
  constructor(options) {
    this.options = options;
    this.webContents = new FakeWebContents();
    BrowserWindow.all.push(this);
    state.windows.push(this);
    state.contents.push(this.webContents);
    for (const fn of state.appHandlers.get('web-contents-created') ?? []) fn({}, this.webContents);
  }
  once() {}
  on() {}
  show() {}
  focus() {}
  restore() {}
  isMinimized() {
    return false;
  }
  isDestroyed() {
    return false;
  }
  loadFile(path) {
    this.webContents.mainFrame.url = pathToFileURL(path).href;
    return Promise.resolve();
  }
  loadURL(url) {
    this.webContents.mainFrame.url = url;
    return Promise.resolve();
  }
}

export const app = {
  requestSingleInstanceLock: () => true,
  on(name, fn) {
    const list = state.appHandlers.get(name) ?? [];
    list.push(fn);
    state.appHandlers.set(name, list);
  },
  whenReady: () => Promise.resolve(),
  getPath: (name) => {
    if (name !== 'userData') throw new Error(`fake electron: getPath(${name})`);
    return state.userData;
  },
  quit() {
    state.quitCalls++;
  },
  exit(code) {
    throw new Error(`fake electron: app.exit(${code})`);
  },
};

export const ipcMain = {
  handle(channel, fn) {
    state.ipcHandlers.set(channel, fn);
  },
};

export const session = {
  defaultSession: {
    setPermissionRequestHandler(fn) {
      state.permissionHandler = fn;
    },
    setPermissionCheckHandler() {},
    webRequest: { onHeadersReceived() {} },
  },
};

export const dialog = {
  showOpenDialog: async () => ({ canceled: true, filePaths: [] }),
  showErrorBox: (title, message) => {
    throw new Error(`fake electron: ${title}: ${message}`);
  },
};

export const shell = {
  openExternal: async (url) => {
    state.opened.push(url);
  },
};

export const powerSaveBlocker = {
  active: new Set(),
  next: 1,
  start() {
    const id = this.next++;
    this.active.add(id);
    return id;
  },
  stop(id) {
    this.active.delete(id);
  },
  isStarted(id) {
    return this.active.has(id);
  },
};

export class Notification {
  static isSupported() {
    return false;
  }
  constructor(options) {
    this.options = options;
  }
  show() {}
  on() {}
}

/** Like Linux without a keyring: no OS encryption, so the hub token cannot be stored. */
export const safeStorage = {
  isEncryptionAvailable: () => false,
  encryptString() {
    throw new Error('Encryption is not available.');
  },
  decryptString() {
    throw new Error('Encryption is not available.');
  },
};

export default {
  app,
  safeStorage,
  BrowserWindow,
  dialog,
  ipcMain,
  Notification,
  powerSaveBlocker,
  session,
  shell,
};
