/**
 * Pure helpers behind the run charts: merging step metrics that arrive from two sources (live
 * events and a backfill by step range) without duplicates or gaps, exponential smoothing of the
 * train loss, and the x value of a point in steps, epochs or tokens.
 */
import type { RunMetric } from '../../../../contract/index.ts';

/**
 * `a` and `b` sorted by step -> one array sorted by step, one entry per step (b wins on a tie:
 * a resumed run replaces the steps it repeats). Appending in order is the common case: O(n).
 */
export function mergeByStep(a: readonly RunMetric[], b: readonly RunMetric[]): RunMetric[] {
  if (b.length === 0) return a as RunMetric[];
  const lastA = a.at(-1);
  if (!lastA || b[0]!.step > lastA.step) return [...a, ...b];
  const out: RunMetric[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y && (!x || y.step <= x.step)) {
      if (x && x.step === y.step) i++;
      out.push(y);
      j++;
    } else if (x) {
      out.push(x);
      i++;
    }
  }
  return out;
}

/** Drop steps after `step` (a run that resumed from an earlier checkpoint repeats them). */
export function truncateAfter(a: readonly RunMetric[], step: number): RunMetric[] {
  const k = a.findIndex((m) => m.step > step);
  return k < 0 ? (a as RunMetric[]) : a.slice(0, k);
}

/**
 * Exponential moving average with bias correction (as TensorBoard does), so the first points
 * are not pulled towards 0. weight 0 = raw; 0.9 = strong smoothing.
 */
export function smooth(values: readonly number[], weight: number): number[] {
  const out: number[] = [];
  let last = 0;
  let n = 0;
  for (const v of values) {
    if (!Number.isFinite(v)) {
      out.push(v);
      continue;
    }
    last = last * weight + (1 - weight) * v;
    n++;
    out.push(last / (1 - weight ** n));
  }
  return out;
}

export type XAxis = 'step' | 'epoch' | 'tokens';

export function xOf(m: RunMetric, axis: XAxis): number {
  return axis === 'step' ? m.step : axis === 'epoch' ? m.epoch : m.tokens;
}

/** Seconds left from the pace of the last `window` steps; null before two points exist. */
export function etaSeconds(
  metrics: readonly RunMetric[],
  totalSteps: number,
  window = 50,
): number | null {
  const last = metrics.at(-1);
  const first = metrics[Math.max(0, metrics.length - window)];
  if (!last || !first || last.step === first.step) return null;
  const perStep = (last.time - first.time) / 1000 / (last.step - first.step);
  return Math.max(0, (totalSteps - last.step) * perStep);
}

/** One line of a chart. */
export interface Series {
  label: string;
  color: string;
  points: { x: number; y: number }[];
  /** Thin and translucent (raw values under a smoothed line). */
  faint?: boolean;
  /** Points drawn (sparse series such as validation loss). */
  dots?: boolean;
}
