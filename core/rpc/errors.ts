/** Turning anything thrown into the `{ code, message }` that crosses the contract. */
import type { z } from 'zod';
import { OvernightError, type RpcErrorPayload } from '../../contract/index.ts';

/** OvernightError → its payload; anything else → INTERNAL with the message only (never a stack). */
export function toErrorPayload(err: unknown): RpcErrorPayload {
  if (err instanceof OvernightError) return err.toPayload();
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message: message || 'internal error' };
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

/** One line naming each failing field and what was expected, e.g. `path: expected string, received number`. */
export function formatZodError(error: z.ZodError, root = 'params'): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length ? formatPath(issue.path) : root;
      const what = issue.message.replace(/^Invalid input: /, '');
      return `${where}: ${what}`;
    })
    .join('; ');
}
