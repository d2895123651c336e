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
  'NETWORK', // a remote host (Hugging Face) cannot be reached or answered with a server error
  'ACCESS_DENIED', // a remote host refused: gated model without (or with a wrong) access token
  'NO_SPACE', // not enough free disk space for a download
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

/** What a failed zod parse reports (structurally, so this file needs no zod at run time). */
export interface IssueList {
  issues: readonly { path: readonly PropertyKey[]; message: string }[];
}

/** `a.b[2]` style path for messages. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/**
 * One line per failing field and what was expected, e.g. `path: expected string, received
 * number`; a failure of the whole value is named `root`.
 */
export function zodIssueLines(error: IssueList, root: string): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.length ? formatPath(issue.path) : root;
    return `${where}: ${issue.message.replace(/^Invalid input: /, '')}`;
  });
}

/** The lines of `zodIssueLines` as one line, for an error message. */
export function formatZodError(error: IssueList, root = 'params'): string {
  return zodIssueLines(error, root).join('; ');
}
