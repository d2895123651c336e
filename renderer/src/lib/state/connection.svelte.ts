/**
 * The link to the engine: which transport, its status, and "it (re)opened" callbacks so state
 * classes can reload after a reconnect without effects.
 */
import type { RpcClient } from '../../../../contract/index.ts';
import { createTransport, type ConnectionStatus, type Transport } from '../rpc/index.ts';

export class ConnectionState {
  status: ConnectionStatus = $state({ state: 'connecting', attempt: 1 });
  readonly transport: Transport;
  /** Plain array: listeners are not UI state. */
  #openListeners: (() => void)[] = [];

  label = $derived.by(() => {
    switch (this.status.state) {
      case 'open':
        return 'Connected';
      case 'connecting':
        return this.status.attempt > 1 ? 'Reconnecting…' : 'Connecting…';
      case 'offline':
        return 'Engine unreachable';
      case 'unauthorized':
        return 'Not authorised';
      case 'closed':
        return 'Disconnected';
    }
  });

  constructor(transport?: (onStatus: (s: ConnectionStatus) => void) => Transport) {
    this.transport = (transport ?? createTransport)((s) => this.#setStatus(s));
  }

  get client(): RpcClient {
    return this.transport.client;
  }

  get isOpen(): boolean {
    return this.status.state === 'open';
  }

  /** Runs `fn` now if connected, and again every time the connection (re)opens. */
  whenOpen(fn: () => void): () => void {
    this.#openListeners.push(fn);
    if (this.status.state === 'open') fn();
    return () => {
      this.#openListeners = this.#openListeners.filter((f) => f !== fn);
    };
  }

  retry(): void {
    this.transport.reconnect();
  }

  #setStatus(s: ConnectionStatus): void {
    const wasOpen = this.status.state === 'open';
    this.status = s;
    if (s.state === 'open' && !wasOpen) for (const fn of this.#openListeners) fn();
  }
}
