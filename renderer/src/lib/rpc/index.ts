/**
 * Picks the transport: Electron IPC when the preload exposed `window.overnight`, otherwise a
 * WebSocket to the `overnight serve` that served this page.
 */
import type { OvernightBridge, ShellBridge } from '../../../../contract/bridge.ts';
import type { RpcClient } from '../../../../contract/index.ts';
import { IpcRpcClient } from './ipc.ts';
import { RpcError } from './errors.ts';
import type { StatusListener } from './status.ts';
import { rpcUrl, takeToken } from './token.ts';
import { WebSocketRpcClient } from './websocket.ts';

export { RpcError, errorMessage } from './errors.ts';
export type { ConnectionStatus, StatusListener } from './status.ts';

declare global {
  interface Window {
    overnight?: OvernightBridge;
    overnightShell?: ShellBridge;
  }
}

export interface Transport {
  kind: 'electron' | 'websocket';
  client: RpcClient;
  /** Retry a lost connection now (no-op where there is nothing to retry). */
  reconnect(): void;
  /** Desktop-only helpers (native file dialog); undefined in web mode. */
  shell: ShellBridge | undefined;
}

export function createTransport(onStatus: StatusListener): Transport {
  if (window.overnight) {
    onStatus({ state: 'open' });
    return {
      kind: 'electron',
      client: new IpcRpcClient(window.overnight),
      reconnect: () => {},
      shell: window.overnightShell,
    };
  }
  const token = takeToken({
    location: window.location,
    storage: window.sessionStorage,
    history: window.history,
  });
  if (!token) {
    onStatus({ state: 'unauthorized', reason: 'no-token' });
    return { kind: 'websocket', client: unauthorizedClient, reconnect: () => {}, shell: undefined };
  }
  const ws = new WebSocketRpcClient({ url: rpcUrl(window.location, token), onStatus });
  return { kind: 'websocket', client: ws, reconnect: () => ws.reconnect(), shell: undefined };
}

const unauthorizedClient: RpcClient = {
  call: (method) =>
    Promise.reject(
      new RpcError('UNAUTHORIZED', `${method}: this page has no token for the engine.`),
    ),
  on: () => () => {},
};
