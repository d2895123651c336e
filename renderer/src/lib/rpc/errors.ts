/**
 * The one error type the UI catches from an RPC call. `code` is a contract error code, or one of
 * the client-side codes below for failures that never reached the engine.
 */
import { errorCodes, type ErrorCode } from '../../../../contract/errors.ts';

export type ClientErrorCode =
  /** The transport is down: the call was never sent, or its answer was lost. */
  | 'DISCONNECTED'
  /** The engine answered with something that does not match the contract. */
  | 'BAD_RESPONSE';

export class RpcError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  constructor(code: ErrorCode | ClientErrorCode, message: string) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
  }

  /** Turns a wire `{ code, message }` into an RpcError; an unknown code is kept as INTERNAL. */
  static fromPayload(payload: { code: string; message: string }): RpcError {
    const known = (errorCodes as readonly string[]).includes(payload.code);
    return new RpcError(
      known ? (payload.code as ErrorCode) : 'INTERNAL',
      known ? payload.message : `${payload.code}: ${payload.message}`,
    );
  }
}

/** A message fit to show for anything thrown by a call. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
