/**
 * The one error type the UI catches from an RPC call. `code` is a contract error code, or a
 * client-side code (contract/wire.ts) for failures that never reached the engine.
 */
import type { ClientErrorCode, ErrorCode } from '../../../../contract/index.ts';

export class RpcError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  constructor(code: ErrorCode | ClientErrorCode, message: string) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
  }
}

/** A message fit to show for anything thrown by a call. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
