/**
 * The Electron bridge: what the preload exposes to the renderer, and the IPC channel names main
 * listens on. It is the IPC transport of the contract, not part of the contract itself, so it is
 * not re-exported from index.ts; Electron's preload/main and the renderer's IPC client import it.
 *
 * `window.overnight` has exactly one function per contract method (named like the method) plus
 * `on(event, cb)` for contract events. A call resolves with the wire response without its id,
 * `{ result }` or `{ error: { code, message } }`, because an Error thrown across contextBridge
 * loses its `code`.
 *
 * `window.overnightShell` holds the few things only a desktop shell can do (native file dialog).
 * It is absent in web mode; the UI falls back to typing a path.
 */
import type { RpcErrorPayload } from './errors.ts';
import type { EventName, EventPayload, MethodInput, MethodName, MethodOutput } from './index.ts';

export type BridgeResponse<T> = { result: T } | { error: RpcErrorPayload };

export type OvernightBridge = {
  readonly [M in MethodName]: (params: MethodInput<M>) => Promise<BridgeResponse<MethodOutput<M>>>;
} & {
  on<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void;
};

export interface OpenFileOptions {
  title?: string;
  filters?: { name: string; extensions: string[] }[];
}

export interface ShellBridge {
  /** Native "open file" dialog; resolves with the absolute path, or null when cancelled. */
  openFile(options: OpenFileOptions): Promise<string | null>;
  /** The absolute path of a File the user dropped (Electron's webUtils); '' when it has none. */
  pathForFile(file: File): string;
}

/** IPC channel names (main <-> preload). */
export const ipcChannels = {
  /** invoke(method, params) -> BridgeResponse */
  rpc: 'overnight:rpc',
  /** main -> renderer: (event, data) */
  event: 'overnight:event',
  /** invoke(options) -> string | null */
  openFile: 'overnight:shell.openFile',
} as const;
