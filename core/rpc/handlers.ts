/**
 * Handler types. A domain exports a factory returning `Handlers<'domain.a' | 'domain.b'>`;
 * the engine spreads them into one `Handlers` (all methods), so TypeScript refuses to build
 * while any contract method lacks a handler.
 */
import {
  OvernightError,
  type MethodName,
  type MethodOutput,
  type MethodParams,
} from '../../contract/index.ts';

/** Who is calling; transports fill it in (for logs and, later, per-connection state). */
export interface CallContext {
  transport: 'in-memory' | 'websocket' | 'ipc' | 'cli';
}

/** Receives the params already validated (and defaulted) by the method's input schema. */
export type Handler<M extends MethodName> = (
  params: MethodParams<M>,
  ctx: CallContext,
) => Promise<MethodOutput<M>> | MethodOutput<M>;

export type Handlers<M extends MethodName = MethodName> = { [K in M]: Handler<K> };

/**
 * Handlers for a domain whose contract exists but whose engine code does not yet: each method
 * answers UNSUPPORTED "<method> is not implemented yet". Replace with the real handlers.
 */
export function notImplemented<K extends MethodName>(specs: Record<K, unknown>): Handlers<K> {
  const out = {} as Record<K, Handler<K>>;
  for (const name of Object.keys(specs) as K[]) {
    out[name] = () => {
      throw new OvernightError('UNSUPPORTED', `${name} is not implemented yet`);
    };
  }
  return out as Handlers<K>;
}
