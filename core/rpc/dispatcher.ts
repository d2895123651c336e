/**
 * The dispatcher: the one door into the engine. Every transport (WebSocket, Electron IPC, the
 * in-process CLI, in-memory tests) hands it `(method, params)` as untrusted data; it validates the
 * params with the method's schema, runs the handler, and returns a JSON-safe result or a
 * `{ code, message }` error. It never throws and never leaks a stack trace.
 */
import {
  formatZodError,
  isMethodName,
  methods,
  OvernightError,
  type MethodInput,
  type MethodName,
  type MethodOutput,
  type RpcErrorPayload,
} from '../../contract/index.ts';
import { toErrorPayload } from './errors.ts';
import type { CallContext, Handler, Handlers } from './handlers.ts';

export type DispatchResult = { ok: true; result: unknown } | { ok: false; error: RpcErrorPayload };

export interface Dispatcher {
  /** Untyped entry for transports: never throws. */
  dispatch(method: string, params: unknown, ctx?: CallContext): Promise<DispatchResult>;
  /** Typed entry for in-process callers (CLI, tests): throws OvernightError on failure. */
  call<M extends MethodName>(
    method: M,
    params: MethodInput<M>,
    ctx?: CallContext,
  ): Promise<MethodOutput<M>>;
}

export interface DispatcherOptions {
  /**
   * Check each handler's result against the method's output schema (a mismatch is an
   * INTERNAL error naming the field). On by default; cheap at this app's sizes.
   */
  validateOutput?: boolean;
  /** Called with every INTERNAL error (a bug), for the log. */
  onInternalError?: (method: string, err: unknown) => void;
}

const defaultCtx: CallContext = { transport: 'in-memory' };

export function createDispatcher(handlers: Handlers, options: DispatcherOptions = {}): Dispatcher {
  const validateOutput = options.validateOutput ?? true;

  async function dispatch(
    method: string,
    params: unknown,
    ctx: CallContext = defaultCtx,
  ): Promise<DispatchResult> {
    if (typeof method !== 'string' || !isMethodName(method)) {
      return {
        ok: false,
        error: { code: 'UNKNOWN_METHOD', message: `unknown method "${String(method)}"` },
      };
    }
    const spec = methods[method];
    const parsed = spec.input.safeParse(params ?? {});
    if (!parsed.success) {
      return {
        ok: false,
        error: { code: 'INVALID_INPUT', message: `${method}: ${formatZodError(parsed.error)}` },
      };
    }
    try {
      const handler = handlers[method] as Handler<MethodName>;
      const result: unknown = await handler(parsed.data as never, ctx);
      if (validateOutput) {
        const out = spec.output.safeParse(result);
        if (!out.success) {
          throw new OvernightError(
            'INTERNAL',
            `${method} returned an invalid result: ${formatZodError(out.error, 'result')}`,
          );
        }
        return { ok: true, result: out.data };
      }
      return { ok: true, result };
    } catch (err) {
      const error = toErrorPayload(err);
      if (error.code === 'INTERNAL') options.onInternalError?.(method, err);
      return { ok: false, error };
    }
  }

  return {
    dispatch,
    async call(method, params, ctx) {
      const r = await dispatch(method, params, ctx);
      if (!r.ok) throw new OvernightError(r.error.code, r.error.message);
      return r.result as never;
    },
  };
}
