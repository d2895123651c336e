/**
 * The wire protocol every message transport speaks (WebSocket, in-memory):
 *   request  { id, method, params }
 *   response { id, result } | { id, error: { code, message } }
 *   event    { event, data }
 * and the client half of it, free of any transport: request ids, the calls awaiting an answer,
 * matching a reply to its call, the error a reply becomes, and handing event frames to their
 * handlers. No DOM and no Node, so the engine's clients (in-memory, Node WebSocket) and the
 * renderer's browser WebSocket run this same code; each brings only its own send, its error
 * class and (the renderer) reconnecting. The server half is core/rpc/wire.ts.
 */
import { errorCodes, type ErrorCode, type RpcErrorPayload } from './errors.ts';
import type { EventName, EventPayload } from './index.ts';

export interface WireRequest {
  id: number;
  method: string;
  params: unknown;
}
export type WireResponse =
  { id: number; result: unknown } | { id: number; error: { code: string; message: string } };
export interface WireEvent {
  event: string;
  data: unknown;
}

/** Failures a client reports itself, for calls the engine never answered in the contract's terms. */
export type ClientErrorCode =
  /** The transport is down: the call was never sent, or its answer was lost. */
  | 'DISCONNECTED'
  /** The engine answered with something that does not match the contract. */
  | 'BAD_RESPONSE';

export function isErrorCode(code: unknown): code is ErrorCode {
  return (errorCodes as readonly unknown[]).includes(code);
}

/** The `{ code, message }` an error reply stands for; an unknown code is kept in the message, as INTERNAL. */
export function wireError(error: unknown): RpcErrorPayload {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const { code, message } = error as { code: unknown; message?: unknown };
    if (isErrorCode(code) && typeof message === 'string') return { code, message };
    return { code: 'INTERNAL', message: `${String(code)}: ${String(message ?? '')}` };
  }
  return { code: 'INTERNAL', message: `malformed error from the engine: ${JSON.stringify(error)}` };
}

type Handler = (payload: never) => void;
/** Checks an event before delivery; undefined drops it. */
export type EventCheck = (
  event: string,
  data: unknown,
) => { event: EventName; data: unknown } | undefined;

/** Event handlers by event name. A handler that throws is reported and does not stop the others. */
export class EventHandlers {
  readonly #handlers = new Map<string, Set<Handler>>();
  readonly #check: EventCheck | undefined;

  /** `check` validates each event before delivery (the renderer); without it, events pass as sent. */
  constructor(check?: EventCheck) {
    this.#check = check;
  }

  add<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler as Handler);
    return () => set.delete(handler as Handler);
  }

  deliver(event: string, data: unknown): void {
    const checked = this.#check ? this.#check(event, data) : { event, data };
    if (!checked) return;
    for (const handler of [...(this.#handlers.get(checked.event) ?? [])]) {
      try {
        (handler as (p: unknown) => void)(checked.data);
      } catch (err) {
        console.error(`Handler for "${event}" threw`, err);
      }
    }
  }
}

export interface WireCallsOptions {
  /** Where event frames go. */
  events: EventHandlers;
  /** The error a caller sees (each side has its own class). */
  error(code: ErrorCode | ClientErrorCode, message: string): Error;
}

interface Pending {
  method: string;
  resolve(result: unknown): void;
  reject(err: Error): void;
}

/** The calls awaiting an answer, by request id, and everything that arrives for them. */
export class WireCalls {
  readonly #opts: WireCallsOptions;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(opts: WireCallsOptions) {
    this.#opts = opts;
  }

  /** A new call: its id, the request text to send, and the promise of its (unchecked) result. */
  start(method: string, params: unknown): { id: number; text: string; result: Promise<unknown> } {
    const request: WireRequest = { id: this.#nextId++, method, params };
    const result = new Promise<unknown>((resolve, reject) =>
      this.#pending.set(request.id, { method, resolve, reject }),
    );
    return { id: request.id, text: JSON.stringify(request), result };
  }

  /** Settles call `id` with `err` (it could not be sent). */
  fail(id: number, err: Error): void {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p?.reject(err);
  }

  /** Rejects every call still waiting (the connection is gone); `error` names each by method. */
  failAll(error: (method: string) => Error): void {
    const all = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of all) p.reject(error(p.method));
  }

  /** One frame from the engine: an answer to a call, or an event. Anything else is ignored. */
  receive(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      console.warn('Ignoring a non-JSON frame from the engine');
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as Record<string, unknown>;
    if (typeof m.id === 'number') {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if ('error' in m) {
        const e = wireError(m.error);
        p.reject(this.#opts.error(e.code, e.message));
      } else if ('result' in m) {
        p.resolve(m.result);
      } else {
        p.reject(
          this.#opts.error(
            'BAD_RESPONSE',
            `The engine's answer to ${p.method} has neither result nor error.`,
          ),
        );
      }
      return;
    }
    if (typeof m.event === 'string') this.#opts.events.deliver(m.event, m.data);
  }
}
