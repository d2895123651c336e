/**
 * Pure helpers behind the run charts: merging step metrics that arrive from two sources (live
 * events and a backfill by step range) without duplicates or gaps, exponential smoothing of the
 * train loss, the x value of a point in steps, epochs or tokens, and the chart series of one
 * run, built from the contract's RunMetric / RunEval as they arrive (runs.svelte.ts derives them).
 */
import type { RunEval, RunMetric } from '../../../../contract/index.ts';

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

/** Train loss (raw, faint, and smoothed) with the validation loss as dots. */
export function lossSeries(
  metrics: readonly RunMetric[],
  evals: readonly RunEval[],
  smoothing: number,
): Series[] {
  const sm = smooth(
    metrics.map((x) => x.loss),
    smoothing,
  );
  return [
    {
      label: 'train loss',
      color: '#8b9dff',
      points: metrics.map((x) => ({ x: x.step, y: x.loss })),
      faint: true,
    },
    {
      label: 'train loss (smoothed)',
      color: '#8b9dff',
      points: metrics.map((x, i) => ({ x: x.step, y: sm[i]! })),
    },
    {
      label: 'validation loss',
      color: '#fbbf24',
      points: evals.map((e) => ({ x: e.step, y: e.valLoss })),
      dots: true,
    },
  ];
}

/**
 * One field of every step as a line by step. Steps without the value (a gradient norm stored
 * before the trainer reported it) are left out.
 */
export function stepSeries(
  metrics: readonly RunMetric[],
  field: 'lr' | 'tokensPerSecond' | 'gradNorm',
  label: string,
  color: string,
): Series[] {
  const points = metrics.flatMap((m) => {
    const y = m[field];
    return y === null ? [] : [{ x: m.step, y }];
  });
  return [{ label, color, points }];
}
