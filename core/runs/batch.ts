/**
 * The running run's writes and UI events, batched. Step metrics, evals and probes collect in
 * one pending batch that is written in one transaction every `flushEvents` metrics or `flushMs`
 * (whichever comes first), or at once by `flush()` (the supervisor calls it before it records a
 * checkpoint, so a stored checkpoint never runs ahead of the stored metrics; readers call it
 * before they query). Metrics go to the UI at most every `uiMs`, each event carrying every step
 * since the last. `close()` writes and sends what is left and stops the timers.
 * Holds no policy beyond those two rates; the sinks decide what a write and an event are.
 */
import type { RunEval, RunMetric, RunProbe } from '../../contract/index.ts';

export interface PendingWrites {
  metrics: RunMetric[];
  evals: RunEval[];
  probes: RunProbe[];
}

export interface BatchSinks {
  /** One transaction with everything pending (never called with an empty batch). */
  write(batch: PendingWrites): void;
  /** One UI event with the metrics since the last one (never empty). */
  ui(metrics: RunMetric[]): void;
}

export interface BatchRates {
  flushEvents: number;
  flushMs: number;
  uiMs: number;
}

/** Metric writes: at ~10 steps/s on a tiny model that is ~1 transaction/s. UI: 4 events/s. */
export const batchRates: BatchRates = { flushEvents: 50, flushMs: 1000, uiMs: 250 };

const empty = (): PendingWrites => ({ metrics: [], evals: [], probes: [] });

export class WriteBatch {
  private pending = empty();
  private ui: RunMetric[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private uiTimer: NodeJS.Timeout | null = null;
  private lastFlush = Date.now();

  constructor(
    private readonly sinks: BatchSinks,
    private readonly rates: BatchRates = batchRates,
  ) {}

  metric(m: RunMetric): void {
    this.pending.metrics.push(m);
    this.ui.push(m);
    this.uiTimer ??= setTimeout(() => {
      this.uiTimer = null;
      this.sendUi();
    }, this.rates.uiMs);
    if (
      this.pending.metrics.length >= this.rates.flushEvents ||
      Date.now() - this.lastFlush >= this.rates.flushMs
    ) {
      this.flush();
      return;
    }
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, this.rates.flushMs);
  }

  eval(e: RunEval): void {
    this.pending.evals.push(e);
  }

  probe(p: RunProbe): void {
    this.pending.probes.push(p);
  }

  /** Write everything pending now. */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    this.lastFlush = Date.now();
    const p = this.pending;
    if (!p.metrics.length && !p.evals.length && !p.probes.length) return;
    this.pending = empty();
    this.sinks.write(p);
  }

  /** The end of the run: stop the timers, write what is pending, send the last UI event. */
  close(): void {
    if (this.uiTimer) clearTimeout(this.uiTimer);
    this.uiTimer = null;
    this.flush();
    this.sendUi();
  }

  private sendUi(): void {
    if (!this.ui.length) return;
    const metrics = this.ui;
    this.ui = [];
    this.sinks.ui(metrics);
  }
}
