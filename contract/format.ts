/**
 * Formatting every shell shares (the CLI's progress line, the run page, the New-run estimate),
 * so one quantity reads the same everywhere. Pure functions, no DOM, no Node.
 */
import type { RunMetric } from './runs.ts';

/** "0m59s", "12m05s", "3h05m" (rounded to the second first, so never "1h60m"); "?" if unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  return `${m}m${String(s % 60).padStart(2, '0')}s`;
}

/** Seconds left from the pace of the last `window` steps; null before two steps exist. */
export function etaSeconds(
  metrics: readonly Pick<RunMetric, 'step' | 'time'>[],
  totalSteps: number,
  window = 50,
): number | null {
  const last = metrics.at(-1);
  const first = metrics[Math.max(0, metrics.length - window)];
  if (!last || !first || last.step === first.step) return null;
  const perStep = (last.time - first.time) / 1000 / (last.step - first.step);
  return Math.max(0, (totalSteps - last.step) * perStep);
}

/**
 * The highest memory the steps reported (RunMetric.memoryBytes): the run's measured peak, shown
 * next to its estimate by the run page and `overnight train`. Null when no step reported one.
 */
export function peakMemory(metrics: readonly Pick<RunMetric, 'memoryBytes'>[]): number | null {
  let peak: number | null = null;
  for (const m of metrics)
    if (m.memoryBytes !== null && (peak === null || m.memoryBytes > peak)) peak = m.memoryBytes;
  return peak;
}
