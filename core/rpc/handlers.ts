/**
 * Handler types. A domain exports a factory returning `Handlers<'domain.a' | 'domain.b'>`;
 * the engine spreads them into one `Handlers` (all methods), so TypeScript refuses to build
 * while any contract method lacks a handler.
 */
import type { MethodName, MethodOutput, MethodParams } from '../../contract/index.ts';

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
