/**
 * Error codes that cross the contract. Every failure an engine method reports travels as
 * `{ code, message }` (never a stack trace); the message names the file / line / field and
 * what was expected, so a shell can show it as is.
 */
import { z } from 'zod';

export const errorCodes = [
  'INVALID_INPUT', // the payload failed its schema
  'UNKNOWN_METHOD', // no such method in the contract
  'NOT_FOUND', // an id that names nothing
  'FILE_NOT_FOUND', // a path on the engine's machine that does not exist
  'INVALID_FILE', // a file that is not what it claims (not GGUF, truncated, bad dataset)
  'UNSUPPORTED', // valid, but something Overnight cannot do (architecture, quant type)
  'CONFLICT', // already exists / wrong state
  'OUT_OF_MEMORY',
  'CANCELLED',
  'UNAUTHORIZED', // transport: missing or wrong token / origin
  'INTERNAL', // a bug: the message says what failed
] as const;
export type ErrorCode = (typeof errorCodes)[number];

export const rpcErrorSchema = z.object({
  code: z.enum(errorCodes),
  message: z.string(),
});
export type RpcErrorPayload = z.infer<typeof rpcErrorSchema>;

/** The one error type the engine throws on purpose. Anything else is reported as INTERNAL. */
export class OvernightError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'OvernightError';
    this.code = code;
  }
  toPayload(): RpcErrorPayload {
    return { code: this.code, message: this.message };
  }
}
