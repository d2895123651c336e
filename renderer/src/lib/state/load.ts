/**
 * The one way a state class loads something from the engine: `loading` while the call runs, then
 * the result applied and `error` cleared, or `error` set and the last good data kept. When loads
 * overlap (an event and a reconnect both ask), only the latest one touches the state.
 * Plain TypeScript over the class's own `$state` fields, so it is tested without a browser.
 */
import { errorMessage } from '../rpc/errors.ts';

export interface LoadTarget {
  loading: boolean;
  error: string | null;
}

/** The latest load started for each target; an older one that finishes later is dropped. */
const latest = new WeakMap<LoadTarget, number>();

/** Resolves true when `apply` ran, false when the load failed or a newer one superseded it. */
export async function load<T>(
  target: LoadTarget,
  fetch: () => Promise<T>,
  apply: (value: T) => void,
): Promise<boolean> {
  const seq = (latest.get(target) ?? 0) + 1;
  latest.set(target, seq);
  const current = () => latest.get(target) === seq;
  target.loading = true;
  try {
    const value = await fetch();
    if (!current()) return false;
    apply(value);
    target.error = null;
    return true;
  } catch (err) {
    if (current()) target.error = errorMessage(err);
    return false;
  } finally {
    if (current()) target.loading = false;
  }
}
