/**
 * The wire format of contract/wire.ts as JSON text, for the engine's message transports: the
 * server half (`handleWireRequest`, `encodeEvent`) and the engine-side client (`createWireClient`:
 * the contract's WireCalls with OvernightError) that any send/receive pair (Node WebSocket,
 * in-memory) can drive. The renderer's WebSocket client runs the same WireCalls.
 */
import {
  EventHandlers,
  isErrorCode,
  OvernightError,
  WireCalls,
  type EventName,
  type MethodInput,
  type MethodName,
  type MethodOutput,
  type RpcClient,
  type WireEvent,
  type WireResponse,
} from '../../contract/index.ts';
import type { Dispatcher } from './dispatcher.ts';
import type { CallContext } from './handlers.ts';

/** Server half: one request text in, one response text out (never throws). */
export async function handleWireRequest(
  dispatcher: Dispatcher,
  text: string,
  ctx: CallContext,
): Promise<string> {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return JSON.stringify(invalid(0, 'message is not valid JSON'));
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
    return JSON.stringify(invalid(0, 'message must be an object { id, method, params }'));
  }
  const { id, method, params } = msg as Record<string, unknown>;
  if (typeof id !== 'number' || !Number.isSafeInteger(id)) {
    return JSON.stringify(invalid(0, 'id: expected an integer'));
  }
  if (typeof method !== 'string') return JSON.stringify(invalid(id, 'method: expected string'));
  const r = await dispatcher.dispatch(method, params, ctx);
  const response: WireResponse = r.ok ? { id, result: r.result } : { id, error: r.error };
  return JSON.stringify(response);
}

function invalid(id: number, message: string): WireResponse {
  return { id, error: { code: 'INVALID_INPUT', message } };
}

export function encodeEvent(event: EventName, data: unknown): string {
  const e: WireEvent = { event, data };
  return JSON.stringify(e);
}

export interface WireClient {
  client: RpcClient;
  /** Feed one message text received from the server. */
  receive(text: string): void;
  /** Reject every pending call (the connection is gone), and every later one. */
  failAll(err: OvernightError): void;
}

/** Client half: contract/wire.ts's WireCalls over `send`, with OvernightError as the error. */
export function createWireClient(send: (text: string) => void): WireClient {
  const events = new EventHandlers();
  const calls = new WireCalls({
    events,
    error: (code, message) => new OvernightError(isErrorCode(code) ? code : 'INTERNAL', message),
  });
  let closedWith: OvernightError | null = null;
  const client: RpcClient = {
    call<M extends MethodName>(method: M, params: MethodInput<M>): Promise<MethodOutput<M>> {
      if (closedWith) return Promise.reject(closedWith);
      const { id, text, result } = calls.start(method, params);
      try {
        send(text);
      } catch (err) {
        calls.fail(
          id,
          err instanceof OvernightError
            ? err
            : new OvernightError('INTERNAL', `could not send ${method}: ${String(err)}`),
        );
      }
      return result as Promise<MethodOutput<M>>;
    },
    on: (event, handler) => events.add(event, handler),
  };
  return {
    client,
    receive: (text) => calls.receive(text),
    failAll(err) {
      closedWith = err;
      calls.failAll(() => err);
    },
  };
}
