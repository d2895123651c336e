/**
 * The wire format of contract/index.ts (`{ id, method, params }` → `{ id, result }` |
 * `{ id, error }`, events `{ event, data }`) as JSON text, shared by every message transport:
 * the server half (`handleWireRequest`) and a client half (`createWireClient`) that any
 * send/receive pair (WebSocket, in-memory) can drive.
 */
import {
  isRpcErrorPayload,
  OvernightError,
  type EventName,
  type EventPayload,
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
  /** Reject every pending call (the connection is gone). */
  failAll(err: OvernightError): void;
}

/** Client half: turns `call`/`on` into messages through `send`, and matches replies by id. */
export function createWireClient(send: (text: string) => void): WireClient {
  let nextId = 1;
  const pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: unknown) => void }
  >();
  const handlers = new Map<string, Set<(payload: unknown) => void>>();
  let closedWith: OvernightError | null = null;

  const client: RpcClient = {
    call<M extends MethodName>(method: M, params: MethodInput<M>): Promise<MethodOutput<M>> {
      if (closedWith) return Promise.reject(closedWith);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        try {
          send(JSON.stringify({ id, method, params }));
        } catch (err) {
          pending.delete(id);
          reject(
            err instanceof OvernightError
              ? err
              : new OvernightError('INTERNAL', `could not send ${method}: ${String(err)}`),
          );
        }
      });
    },
    on<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void {
      let set = handlers.get(event);
      if (!set) handlers.set(event, (set = new Set()));
      const h = handler as (payload: unknown) => void;
      set.add(h);
      return () => set.delete(h);
    },
  };

  return {
    client,
    receive(text) {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      if (typeof msg.event === 'string') {
        for (const h of [...(handlers.get(msg.event) ?? [])]) h(msg.data);
        return;
      }
      if (typeof msg.id !== 'number') return;
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      if ('error' in msg) {
        const e = msg.error;
        p.reject(
          isRpcErrorPayload(e)
            ? new OvernightError(e.code, e.message)
            : new OvernightError(
                'INTERNAL',
                `malformed error from the engine: ${JSON.stringify(e)}`,
              ),
        );
      } else {
        p.resolve(msg.result);
      }
    },
    failAll(err) {
      closedWith = err;
      for (const p of pending.values()) p.reject(err);
      pending.clear();
    },
  };
}
