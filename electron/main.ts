/**
 * Electron main process: one window on the built renderer, the engine hosted in this process,
 * and the IPC transport between them. What it is not: a second engine or any domain logic; every
 * request goes through the same dispatcher as web mode and the CLI.
 *
 * Security stance (the renderer is treated as untrusted content):
 * - contextIsolation, sandbox, no nodeIntegration, webSecurity on; the preload exposes only the
 *   contract's methods (see contract/bridge.ts), never ipcRenderer.
 * - every IPC call is checked: it must come from our window's main frame, showing our page.
 * - navigation away from the app and new windows are refused; https links open in the browser.
 * - CSP comes from the <meta> tag vite writes into the built index.html (file:// has no headers);
 *   the dev server URL gets the same policy as a response header.
 * - every permission request (camera, notifications from the page, ...) is denied.
 *
 * Bundled by electron/build.mjs to dist/electron/main.js as ESM (package.json "type": "module";
 * Electron >= 28 loads an ESM main). node_modules stay external.
 */
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  safeStorage,
  session,
  shell,
  type IpcMainInvokeEvent,
} from 'electron';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ipcChannels, type BridgeResponse, type OpenFileOptions } from '../contract/bridge.ts';
import type { EventName } from '../contract/index.ts';
import { createEngine, type Engine } from '../core/engine.ts';
import { encryptedSecretStore } from '../core/hub/token.ts';
import { keepAwakeWhileTraining } from './power.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
const preloadPath = join(here, 'preload.cjs');
const rendererIndex = join(here, '..', 'renderer', 'index.html');
/** Window icon for Linux (macOS and Windows take it from the packaged app). */
const windowIcon = join(here, '..', '..', 'resources', 'icons', '512x512.png');
/** `OVERNIGHT_DEV_URL=http://127.0.0.1:5173/` loads the Vite dev server instead of the build. */
const devUrl = process.env.OVERNIGHT_DEV_URL ? new URL(process.env.OVERNIGHT_DEV_URL) : null;

const csp = [
  "default-src 'self'",
  "script-src 'self'",
  // Vite's dev server injects component CSS as <style> elements; the build does not.
  devUrl ? "style-src 'self' 'unsafe-inline'" : "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

let mainWindow: BrowserWindow | null = null;
let engine: Engine | null = null;

/**
 * Engine event sinks: each gets every contract event. Today: forward to the window. (The
 * power-save blocker is not a sink: keepAwakeWhileTraining in power.ts subscribes to runs.state
 * itself. There are no desktop notifications.)
 */
type EventSink = (event: EventName, data: unknown) => void;
const eventSinks: EventSink[] = [
  (event, data) => {
    if (mainWindow && !mainWindow.isDestroyed())
      mainWindow.webContents.send(ipcChannels.event, event, data);
  },
];

function isAppUrl(raw: string): boolean {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return false;
  }
  if (devUrl) return url.origin === devUrl.origin;
  return url.protocol === 'file:' && url.pathname === pathToFileURL(rendererIndex).pathname;
}

/** Only our window's top frame, showing our page, may talk to the engine. */
function isTrustedSender(e: IpcMainInvokeEvent): boolean {
  const frame = e.senderFrame;
  if (!mainWindow || mainWindow.isDestroyed() || !frame) return false;
  if (e.sender !== mainWindow.webContents) return false;
  if (frame !== mainWindow.webContents.mainFrame) return false;
  return isAppUrl(frame.url);
}

function registerIpc(): void {
  ipcMain.handle(
    ipcChannels.rpc,
    async (e, method: unknown, params: unknown): Promise<BridgeResponse<unknown>> => {
      if (!isTrustedSender(e)) {
        return {
          error: { code: 'UNAUTHORIZED', message: 'IPC call from an untrusted frame refused' },
        };
      }
      if (!engine) return { error: { code: 'INTERNAL', message: 'the engine is not running' } };
      const r = await engine.dispatcher.dispatch(String(method), params, { transport: 'ipc' });
      return r.ok ? { result: r.result } : { error: r.error };
    },
  );

  ipcMain.handle(ipcChannels.openFile, async (e, options: unknown): Promise<string | null> => {
    if (!isTrustedSender(e) || !mainWindow) return null;
    const o = parseOpenFileOptions(options);
    const r = await dialog.showOpenDialog(mainWindow, {
      title: o.title,
      properties: ['openFile'],
      filters: o.filters,
    });
    return r.canceled ? null : (r.filePaths[0] ?? null);
  });
}

/** The renderer is untrusted: keep only well-formed strings. */
function parseOpenFileOptions(v: unknown): Required<OpenFileOptions> {
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const title = typeof o.title === 'string' ? o.title.slice(0, 200) : 'Open';
  const filters = Array.isArray(o.filters)
    ? o.filters
        .filter(
          (f): f is { name: string; extensions: string[] } =>
            typeof f === 'object' &&
            f !== null &&
            typeof (f as { name?: unknown }).name === 'string' &&
            Array.isArray((f as { extensions?: unknown }).extensions) &&
            (f as { extensions: unknown[] }).extensions.every((x) => typeof x === 'string'),
        )
        .slice(0, 10)
    : [];
  return { title, filters };
}

function hardenContents(): void {
  app.on('web-contents-created', (_e, contents) => {
    contents.on('will-navigate', (event, url) => {
      if (!isAppUrl(url)) event.preventDefault();
    });
    contents.on('will-redirect', (event, url) => {
      if (!isAppUrl(url)) event.preventDefault();
    });
    contents.on('will-attach-webview', (event) => event.preventDefault());
    contents.setWindowOpenHandler(({ url }) => {
      if (url.startsWith('https://')) void shell.openExternal(url);
      return { action: 'deny' };
    });
  });

  session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) =>
    callback(false),
  );
  session.defaultSession.setPermissionCheckHandler(() => false);
  if (devUrl) {
    session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
      callback({
        responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [csp] },
      });
    });
  }
}

function createWindow(): BrowserWindow {
  const win = new BrowserWindow({
    width: 1280,
    height: 820,
    minWidth: 900,
    minHeight: 600,
    title: 'Overnight',
    backgroundColor: '#0d1016', // --bg in renderer/src/app.css: no white flash before first paint
    show: false,
    ...(process.platform === 'linux' ? { icon: windowIcon } : {}),
    webPreferences: {
      preload: preloadPath,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
    },
  });
  win.once('ready-to-show', () => win.show());
  win.on('closed', () => {
    if (mainWindow === win) mainWindow = null;
  });
  if (devUrl) void win.loadURL(devUrl.href);
  else void win.loadFile(rendererIndex);
  return win;
}

function main(): void {
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return;
  }
  app.on('second-instance', () => {
    if (!mainWindow) return;
    if (mainWindow.isMinimized()) mainWindow.restore();
    mainWindow.focus();
  });

  app.whenReady().then(
    () => {
      const userData = app.getPath('userData');
      engine = createEngine({
        dataDir: userData,
        // The hub token is encrypted by the OS secret store (Keychain, DPAPI, libsecret).
        secretStore: encryptedSecretStore(safeStorage, join(userData, 'hub-token.enc')),
      });
      engine.events.subscribeAll((event, data) => {
        for (const sink of eventSinks) sink(event, data);
      });
      hardenContents();
      registerIpc();
      keepAwakeWhileTraining(engine);
      engine.runs.start(); // resume interrupted runs, start the queue
      mainWindow = createWindow();
      app.on('activate', () => {
        if (BrowserWindow.getAllWindows().length === 0) mainWindow = createWindow();
      });
    },
    (err: unknown) => {
      dialog.showErrorBox('Overnight could not start', String(err));
      app.exit(1);
    },
  );

  app.on('window-all-closed', () => {
    // macOS keeps the app in the dock. A later issue keeps the engine alive while a run trains.
    if (process.platform !== 'darwin') app.quit();
  });

  // Close the engine (store, model handles) before exiting; quit again once it is done.
  let engineClosed = false;
  app.on('will-quit', (event) => {
    if (engineClosed || !engine) return;
    event.preventDefault();
    const e = engine;
    engine = null;
    void e
      .close()
      .catch((err: unknown) => console.error('[electron] engine close failed:', err))
      .finally(() => {
        engineClosed = true;
        app.quit();
      });
  });
}

main();
