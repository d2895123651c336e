/**
 * RpcClient over a WebSocket (web mode: `overnight serve`). One socket; the protocol (request
 * ids, matching answers, event frames, the error an answer becomes) is contract/wire.ts's
 * WireCalls, the same code the engine's own clients run; this file adds only the connection.
 *
 * Lifecycle: connecting -> open -> (lost) -> offline -> connecting -> ... with exponential backoff.
 * Calls made while connecting wait for the socket; calls made while offline fail at once; calls in
 * flight when the socket drops are rejected with DISCONNECTED (the engine may or may not have done
 * the work). A refused token stops the retries: the server closes with 4401 / 1008, or refuses the
 * upgrade (HTTP 401/403), which a browser only sees as a socket that closed before opening. So
 * after such a failure we ask the same server for the page over plain HTTP: if it answers, the
 * engine is up and refused us (our token is wrong or stale: it changes every time `overnight
 * serve` starts); if it does not, the engine is down and we retry.
 */
import {
  EventHandlers,
  WireCalls,
  type EventName,
  type EventPayload,
  type MethodInput,
  type MethodName,
  type MethodOutput,
  type RpcClient,
} from '../../../../contract/index.ts';
import { RpcError } from './errors.ts';
import type { ConnectionStatus, StatusListener } from './status.ts';
import { parseEvent, parseResult } from './validate.ts';

/** Close codes a server uses to say "your token is wrong". 4401 mirrors HTTP 401; 1008 is policy violation. */
const UNAUTHORIZED_CLOSE_CODES = new Set([4401, 4403, 1008]);

export interface Backoff {
  initialMs: number;
  maxMs: number;
  factor: number;
}
/** 0.5 s, 1 s, 2 s, ... capped at 10 s: quick when the engine restarts, quiet when it is gone. */
export const defaultBackoff: Backoff = { initialMs: 500, maxMs: 10_000, factor: 2 };

export function backoffDelay(attempt: number, b: Backoff = defaultBackoff): number {
  return Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, attempt - 1));
}

/** The subset of the DOM WebSocket we use, so tests can pass a fake. */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface WebSocketClientOptions {
  url: string;
  createSocket?: (url: string) => SocketLike;
  /** Resolves true when the server answers plain HTTP (see the header comment). */
  probeServerUp?: (url: string) => Promise<boolean>;
  backoff?: Backoff;
  onStatus?: StatusListener;
}

/** A call started while the socket was not open yet. */
interface Queued {
  id: number;
  method: MethodName;
  text: string;
}

const OPEN = 1;

/** Any HTTP answer from the server that owns `url` (a ws:// URL) means it is up. */
export async function httpProbeServerUp(url: string): Promise<boolean> {
  try {
    const u = new URL(url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    await fetch(`${u.origin}/`, { method: 'HEAD', cache: 'no-store' });
    return true;
  } catch {
    return false;
  }
}

export class WebSocketRpcClient implements RpcClient {
  readonly #opts: Required<Omit<WebSocketClientOptions, 'onStatus'>> & {
    onStatus?: StatusListener;
  };
  #socket: SocketLike | null = null;
  #status: ConnectionStatus = { state: 'connecting', attempt: 1 };
  #attempt = 0;
  #events = new EventHandlers(parseEvent);
  /** Every call awaiting an answer, sent or queued. */
  #calls = new WireCalls({
    events: this.#events,
    error: (code, message) => new RpcError(code, message),
  });
  /** Started, waiting for the socket to open. */
  #queued: Queued[] = [];
  #retryTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: WebSocketClientOptions) {
    this.#opts = {
      createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
      probeServerUp: httpProbeServerUp,
      backoff: defaultBackoff,
      ...options,
    };
    this.#connect();
  }

  get status(): ConnectionStatus {
    return this.#status;
  }

  call<M extends MethodName>(method: M, params: MethodInput<M>): Promise<MethodOutput<M>> {
    const s = this.#status.state;
    if (s === 'unauthorized' || s === 'closed' || s === 'offline') {
      return Promise.reject(this.#notConnectedError(method));
    }
    const { id, text, result } = this.#calls.start(method, params);
    if (this.#socket && this.#socket.readyState === OPEN) this.#send({ id, method, text });
    else this.#queued.push({ id, method, text });
    return result.then((r) => parseResult(method, r));
  }

  on<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void {
    return this.#events.add(event, handler);
  }

  /** Retry now instead of waiting for the backoff timer (the "Retry" button). */
  reconnect(): void {
    if (this.#status.state !== 'offline') return;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#connect();
  }

  close(): void {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#setStatus({ state: 'closed' });
    this.#failAll('DISCONNECTED', 'The connection to the engine was closed.');
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000, 'client closed');
  }

  #setStatus(status: ConnectionStatus): void {
    this.#status = status;
    this.#opts.onStatus?.(status);
  }

  #connect(): void {
    this.#attempt++;
    this.#setStatus({ state: 'connecting', attempt: this.#attempt });
    let opened = false;
    let socket: SocketLike;
    try {
      socket = this.#opts.createSocket(this.#opts.url);
    } catch (err) {
      this.#scheduleRetry(`could not open a WebSocket: ${String(err)}`);
      return;
    }
    this.#socket = socket;
    socket.onopen = () => {
      opened = true;
      this.#attempt = 0;
      this.#setStatus({ state: 'open' });
      const queued = this.#queued;
      this.#queued = [];
      for (const call of queued) this.#send(call);
    };
    socket.onmessage = (ev) => this.#calls.receive(String(ev.data));
    socket.onerror = () => {
      /* onclose follows and carries the details */
    };
    socket.onclose = (ev) => {
      if (this.#socket !== socket) return; // superseded or closed by us
      this.#socket = null;
      if (UNAUTHORIZED_CLOSE_CODES.has(ev.code)) {
        this.#unauthorized();
        return;
      }
      this.#failAll(
        'DISCONNECTED',
        opened
          ? 'The connection to the engine was lost before it answered; the request may or may not have completed.'
          : 'Could not connect to the engine.',
      );
      const reason = opened
        ? `connection lost${ev.reason ? `: ${ev.reason}` : ''}`
        : 'the engine is not reachable';
      if (opened) {
        this.#scheduleRetry(reason);
        return;
      }
      // Never opened: either the engine is down or it refused the upgrade (bad token).
      void this.#opts.probeServerUp(this.#opts.url).then((up) => {
        if (this.#status.state === 'closed') return;
        if (up) this.#unauthorized();
        else this.#scheduleRetry(reason);
      });
    };
  }

  #unauthorized(): void {
    this.#setStatus({ state: 'unauthorized', reason: 'rejected' });
    this.#failAll('UNAUTHORIZED', 'The engine refused this page’s token.');
  }

  #scheduleRetry(reason: string): void {
    this.#failAll('DISCONNECTED', 'Could not connect to the engine.');
    const delay = backoffDelay(this.#attempt, this.#opts.backoff);
    this.#setStatus({
      state: 'offline',
      attempt: this.#attempt,
      retryAt: Date.now() + delay,
      reason,
    });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay);
  }

  #send(call: Queued): void {
    try {
      this.#socket!.send(call.text);
    } catch (err) {
      this.#calls.fail(
        call.id,
        new RpcError('DISCONNECTED', `Could not send ${call.method}: ${String(err)}`),
      );
    }
  }

  #failAll(code: RpcError['code'], message: string): void {
    this.#queued = [];
    this.#calls.failAll((method) => new RpcError(code, `${method}: ${message}`));
  }

  #notConnectedError(method: MethodName): RpcError {
    if (this.#status.state === 'unauthorized') {
      return new RpcError('UNAUTHORIZED', `${method}: not authorised to talk to the engine.`);
    }
    return new RpcError('DISCONNECTED', `${method}: not connected to the engine.`);
  }
}
