/**
 * Preload (sandboxed): exposes `window.overnight`, one function per contract method plus
 * `on(event, cb)` for contract events, and `window.overnightShell` (native file dialog).
 * Nothing else crosses: no ipcRenderer, no generic send/invoke. The method and event names are
 * generated from the contract at build time, so a new contract method needs no change here.
 *
 * A sandboxed preload can only require('electron') and a few built-ins, so electron/build.mjs
 * bundles this file (with the contract) into one CommonJS script, dist/electron/preload.cjs.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import {
  ipcChannels,
  type OpenFileOptions,
  type OvernightBridge,
  type ShellBridge,
} from '../contract/bridge.ts';

/** Inlined by electron/build.mjs from contract/index.ts: `Object.keys(methods)`, `Object.keys(events)`. */
declare const __CONTRACT_NAMES__: { methods: string[]; events: string[] };
const eventNames = new Set(__CONTRACT_NAMES__.events);

const bridge: Record<string, unknown> = {};

for (const method of __CONTRACT_NAMES__.methods) {
  bridge[method] = (params: unknown) => ipcRenderer.invoke(ipcChannels.rpc, method, params);
}

bridge.on = (event: unknown, handler: unknown): (() => void) => {
  if (typeof event !== 'string' || !eventNames.has(event))
    throw new Error(`Unknown event "${String(event)}"`);
  if (typeof handler !== 'function')
    throw new Error('on(event, handler): handler must be a function');
  const listener = (_e: IpcRendererEvent, name: unknown, data: unknown) => {
    if (name === event) (handler as (payload: unknown) => void)(data);
  };
  ipcRenderer.on(ipcChannels.event, listener);
  return () => {
    ipcRenderer.removeListener(ipcChannels.event, listener);
  };
};

const shellBridge: ShellBridge = {
  openFile: (options: OpenFileOptions) => ipcRenderer.invoke(ipcChannels.openFile, options),
  // Since Electron 32 a dropped File no longer carries `.path`; webUtils is the supported way.
  pathForFile: (file: File) => webUtils.getPathForFile(file),
};

// The loop above builds exactly the OvernightBridge shape; TypeScript cannot follow the loop.
contextBridge.exposeInMainWorld('overnight', bridge as OvernightBridge);
contextBridge.exposeInMainWorld('overnightShell', shellBridge);
