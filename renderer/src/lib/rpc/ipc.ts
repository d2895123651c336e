/**
 * RpcClient over Electron IPC: `window.overnight`, exposed by electron/preload.ts, has one function
 * per contract method that resolves with `{ result }` or `{ error }` (see contract/bridge.ts).
 * Main checks the sender of every call; here we only unwrap and validate.
 */
import type { OvernightBridge } from '../../../../contract/bridge.ts';
import {
  EventHandlers,
  wireError,
  type EventName,
  type EventPayload,
  type MethodInput,
  type MethodName,
  type MethodOutput,
  type RpcClient,
} from '../../../../contract/index.ts';
import { RpcError } from './errors.ts';
import { parseEvent, parseResult } from './validate.ts';

export class IpcRpcClient implements RpcClient {
  readonly #bridge: OvernightBridge;
  readonly #events = new EventHandlers(parseEvent);
  readonly #subscribed = new Set<EventName>();

  constructor(bridge: OvernightBridge) {
    this.#bridge = bridge;
  }

  async call<M extends MethodName>(method: M, params: MethodInput<M>): Promise<MethodOutput<M>> {
    const fn = this.#bridge[method] as unknown as ((p: unknown) => Promise<unknown>) | undefined;
    if (typeof fn !== 'function') {
      throw new RpcError(
        'UNKNOWN_METHOD',
        `The Electron preload does not expose ${method}; rebuild the app.`,
      );
    }
    const response = (await fn(params)) as { result?: unknown; error?: unknown };
    if (response && typeof response === 'object' && response.error) {
      const { code, message } = wireError(response.error);
      throw new RpcError(code, message);
    }
    if (!response || typeof response !== 'object' || !('result' in response)) {
      throw new RpcError('BAD_RESPONSE', `The answer to ${method} has neither result nor error.`);
    }
    return parseResult(method, response.result);
  }

  on<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void {
    // One bridge subscription per event name; our own registry fans out and validates.
    if (!this.#subscribed.has(event)) {
      this.#subscribed.add(event);
      this.#bridge.on(event, (data) => this.#events.deliver(event, data));
    }
    return this.#events.add(event, handler);
  }
}
