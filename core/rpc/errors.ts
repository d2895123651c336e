/** Turning anything thrown into the `{ code, message }` that crosses the contract. */
import { OvernightError, type RpcErrorPayload } from '../../contract/index.ts';

/** OvernightError → its payload; anything else → INTERNAL with the message only (never a stack). */
export function toErrorPayload(err: unknown): RpcErrorPayload {
  if (err instanceof OvernightError) return err.toPayload();
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message: message || 'internal error' };
}
