/**
 * Runs as the UI sees them: the history list (kept current by `runs.state` events), one live run
 * (its metric series, evals, probes and checkpoints), the New-run form, and compare.
 *
 * Live series: subscribe to the events first, then backfill from `runs.metrics` by step, and
 * merge the two by step (lib/runs/series.ts), so nothing is lost or doubled while the page
 * opens mid-run or reconnects. Metrics are `$state.raw`: replaced, never mutated; the chart
 * series and the ETA are `$derived` from them (the contract's RunMetric, unchanged since the
 * trainer made it).
 */
import {
  etaSeconds,
  peakMemory,
  runConfigDefaults,
  type Run,
  type RunCheckpoint,
  type RunConfig,
  type RunConfigInput,
  type RunDetail,
  type RunPlacement,
  type RunEstimate,
  type RunEval,
  type RunMetric,
  type RunProbe,
  type RunState,
} from '../../../../contract/index.ts';
import { errorMessage } from '../rpc/index.ts';
import { lossSeries, mergeByStep, stepSeries, truncateAfter, type Series } from '../runs/series.ts';
import type { ConnectionState } from './connection.svelte.ts';
import { load } from './load.ts';

export class RunsState {
  list: Run[] = $state.raw([]);
  loaded = $state(false);
  loading = $state(false);
  error: string | null = $state(null);
  filter: RunState | 'all' = $state('all');
  search = $state('');
  readonly #conn: ConnectionState;

  visible = $derived.by(() => {
    const q = this.search.trim().toLowerCase();
    return this.list.filter(
      (r) =>
        (this.filter === 'all' || r.state === this.filter) &&
        (!q || r.name.toLowerCase().includes(q) || r.notes.toLowerCase().includes(q)),
    );
  });

  constructor(conn: ConnectionState) {
    this.#conn = conn;
    conn.client.on('runs.state', (run) => this.#upsert(run));
    conn.whenOpen(() => void this.load());
  }

  get client() {
    return this.#conn.client;
  }

  byId(id: string): Run | undefined {
    return this.list.find((r) => r.id === id);
  }

  #upsert(run: Run): void {
    const i = this.list.findIndex((r) => r.id === run.id);
    notifyIfFinished(this, this.list[i], run);
    this.list = i < 0 ? [run, ...this.list] : this.list.with(i, run);
  }

  async load(): Promise<void> {
    await load(
      this,
      () => this.client.call('runs.list', {}),
      (list) => {
        this.list = list;
        this.loaded = true;
      },
    );
  }

  async rename(id: string, name: string): Promise<void> {
    this.#upsert(await this.client.call('runs.rename', { id, name }));
  }

  async setNotes(id: string, notes: string): Promise<void> {
    this.#upsert(await this.client.call('runs.setNotes', { id, notes }));
  }

  async remove(id: string): Promise<void> {
    await this.client.call('runs.delete', { id });
    this.list = this.list.filter((r) => r.id !== id);
  }

  async control(verb: 'pause' | 'resume' | 'cancel', id: string): Promise<void> {
    this.#upsert(await this.client.call(`runs.${verb}`, { id }));
  }
}

/**
 * A desktop notification (browser Notification API; Electron shows it natively) when a run
 * completes or fails for good. A failed run that retries is queued again at once, so the
 * check waits a moment and notifies only if the run is still in that state.
 */
function notifyIfFinished(runs: RunsState, prev: Run | undefined, run: Run): void {
  if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
  if ((run.state !== 'completed' && run.state !== 'failed') || prev?.state === run.state) return;
  setTimeout(() => {
    if (runs.byId(run.id)?.state !== run.state) return;
    new Notification(`Overnight: run ${run.state}`, {
      body: `${run.name}${run.stateReason ? ` — ${run.stateReason}` : ''}`,
    });
  }, 1000);
}

/** Ask once, when the user starts a run, whether finished runs may notify. */
function askNotificationPermission(): void {
  if (typeof Notification !== 'undefined' && Notification.permission === 'default')
    void Notification.requestPermission();
}

/** One run's page: live while it runs, complete when it is done. */
export class LiveRun {
  run: Run | null = $state.raw(null);
  metrics: RunMetric[] = $state.raw([]);
  evals: RunEval[] = $state.raw([]);
  probes: RunProbe[] = $state.raw([]);
  checkpoints: RunCheckpoint[] = $state.raw([]);
  /** The trainer's placement report (nodes per backend, ops on the CPU); null until it is ready. */
  placement: RunPlacement | null = $state.raw(null);
  error: string | null = $state(null);
  loaded = $state(false);
  loading = $state(false);
  /** Smoothing of the train-loss line (0 = raw). */
  smoothing = $state(0.9);

  last: RunMetric | undefined = $derived(this.metrics.at(-1));
  /** The highest memory any step reported (RunMetric.memoryBytes), null before one did. */
  peakMemory: number | null = $derived(peakMemory(this.metrics));
  lossSeries: Series[] = $derived(lossSeries(this.metrics, this.evals, this.smoothing));
  lrSeries: Series[] = $derived(stepSeries(this.metrics, 'lr', 'learning rate', '#4ade80'));
  speedSeries: Series[] = $derived(
    stepSeries(this.metrics, 'tokensPerSecond', 'tokens/s', '#a78bfa'),
  );
  gradNormSeries: Series[] = $derived(
    stepSeries(this.metrics, 'gradNorm', 'gradient norm (before clipping)', '#f472b6'),
  );
  /** Seconds left while it runs, from the pace of the recent steps. */
  eta: number | null = $derived(
    this.run?.state === 'running' ? etaSeconds(this.metrics, this.run.totalSteps) : null,
  );

  readonly #offs: (() => void)[] = [];
  readonly #runs: RunsState;

  constructor(
    runs: RunsState,
    readonly id: string,
  ) {
    this.#runs = runs;
    const c = runs.client;
    // Subscribe first, then backfill: an event that lands during the backfill is merged by step.
    this.#offs.push(
      c.on('runs.step', (p) => {
        if (p.id === id) this.metrics = mergeByStep(this.metrics, p.metrics);
      }),
      c.on('runs.eval', (p) => {
        if (p.id === id)
          this.evals = [...this.evals.filter((e) => e.step !== p.step), p].sort(
            (a, b) => a.step - b.step,
          );
      }),
      c.on('runs.probe', (p) => {
        if (p.id !== id) return;
        const fresh = (x: RunProbe) =>
          p.probes.some((y) => y.step === x.step && y.index === x.index);
        this.probes = [...this.probes.filter((x) => !fresh(x)), ...p.probes];
      }),
      c.on('runs.checkpoint', (p) => {
        if (p.id === id) void this.#loadDetail();
      }),
      c.on('runs.state', (r) => {
        if (r.id !== id) return;
        // A resumed run repeats the steps after its checkpoint: drop them from the chart.
        if (this.run && r.state === 'running' && r.step < (this.metrics.at(-1)?.step ?? 0)) {
          this.metrics = truncateAfter(this.metrics, r.step);
        }
        this.run = r;
        // The report is written when the trainer is ready, which a state event follows.
        if (this.placement === null && r.state === 'running') void this.#loadDetail();
      }),
    );
    void this.load();
  }

  async #loadDetail(): Promise<void> {
    const d = await this.#runs.client.call('runs.show', { id: this.id });
    this.#applyDetail(d);
  }

  #applyDetail(d: RunDetail): void {
    this.run = d.run;
    this.evals = d.evals;
    this.probes = d.probes;
    this.checkpoints = d.checkpoints;
    this.placement = d.placement;
  }

  async load(): Promise<void> {
    const client = this.#runs.client;
    await load(
      this,
      async () => {
        const detail = await client.call('runs.show', { id: this.id });
        // Backfill in pages so a 50,000-step run arrives complete without one huge message.
        const page = 5000;
        let metrics: RunMetric[] = [];
        for (let from = 0; ; from += page) {
          const batch = await client.call('runs.metrics', {
            id: this.id,
            fromStep: from,
            toStep: from + page - 1,
          });
          metrics = mergeByStep(metrics, batch);
          if (from + page > detail.run.step) break;
        }
        return { detail, metrics };
      },
      ({ detail, metrics }) => {
        this.#applyDetail(detail);
        // Live events that arrived meanwhile are merged by step.
        this.metrics = mergeByStep(metrics, this.metrics);
        this.loaded = true;
      },
    );
  }

  checkpointNow(): Promise<unknown> {
    return this.#runs.client.call('runs.checkpointNow', { id: this.id });
  }

  dispose(): void {
    for (const off of this.#offs) off();
  }
}

/** The New-run form: presets, every field, validation and the estimate before start. */
export class NewRunForm {
  config: RunConfigInput = $state({ model: '', dataset: '', preset: 'balanced' });
  presets: { id: string; label: string; explain: string; config: Partial<RunConfig> }[] =
    $state.raw([]);
  estimate: RunEstimate | null = $state.raw(null);
  problems: string[] = $state.raw([]);
  busy: 'estimate' | 'calibrate' | 'create' | null = $state(null);
  error: string | null = $state(null);
  readonly #runs: RunsState;

  /** Starts from the config of run `cloneId`, else from the last run's config, else Balanced. */
  constructor(runs: RunsState, cloneId?: string) {
    this.#runs = runs;
    void this.#init(cloneId);
  }

  async #init(cloneId?: string): Promise<void> {
    const c = this.#runs.client;
    try {
      this.presets = await c.call('runs.presets', {});
      const start = cloneId
        ? await c.call('runs.clone', { id: cloneId })
        : await c.call('runs.lastConfig', {});
      if (start) this.config = { ...schemaDefaults, ...start };
      else this.applyPreset('balanced');
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  applyPreset(id: string): void {
    const p = this.presets.find((x) => x.id === id);
    if (!p) return;
    const keep = {
      model: this.config.model,
      dataset: this.config.dataset,
      probePrompts: this.config.probePrompts,
    };
    this.config = { ...schemaDefaults, ...p.config, ...keep, preset: p.id as RunConfig['preset'] };
    this.estimate = null;
  }

  set<K extends keyof RunConfigInput>(key: K, value: RunConfigInput[K]): void {
    this.config = {
      ...this.config,
      [key]: value,
      preset: key === 'preset' ? (value as RunConfig['preset']) : 'custom',
    };
    this.estimate = null;
  }

  async runEstimate(calibrate = false): Promise<void> {
    this.busy = calibrate ? 'calibrate' : 'estimate';
    this.error = null;
    try {
      const v = await this.#runs.client.call('runs.validate', {
        config: $state.snapshot(this.config),
      });
      this.problems = v.problems;
      if (v.problems.length === 0) {
        this.estimate = await this.#runs.client.call('runs.estimate', {
          config: $state.snapshot(this.config),
          calibrate,
        });
      }
    } catch (err) {
      this.error = errorMessage(err);
    } finally {
      this.busy = null;
    }
  }

  /** Queues the run; returns it, or null with `error` set. */
  async create(name?: string): Promise<Run | null> {
    this.busy = 'create';
    this.error = null;
    askNotificationPermission();
    try {
      return await this.#runs.client.call('runs.create', {
        config: $state.snapshot(this.config),
        ...(name ? { name } : {}),
      });
    } catch (err) {
      this.error = errorMessage(err);
      return null;
    } finally {
      this.busy = null;
    }
  }
}

/** Every field's default, from the contract (presets list only what they change). */
const schemaDefaults = runConfigDefaults;

export class CompareState {
  result: {
    runs: { run: Run; metrics: RunMetric[]; evals: RunEval[] }[];
    diff: { field: string; values: unknown[] }[];
  } | null = $state.raw(null);
  error: string | null = $state(null);

  constructor(
    runs: RunsState,
    readonly ids: string[],
  ) {
    void runs.client
      .call('runs.compare', { ids })
      .then((r) => (this.result = r))
      .catch((err: unknown) => (this.error = errorMessage(err)));
  }
}
