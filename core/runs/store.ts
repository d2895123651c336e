/**
 * The runs tables (migrations 002-runs, 004-metrics-grad-norm) behind a small typed API. Every read returns contract
 * shapes; every multi-row write is one transaction. This file holds no policy: which state
 * follows which is lifecycle.ts, when to write is supervisor.ts.
 */
import type Database from 'better-sqlite3';
import {
  OvernightError,
  runConfigSchema,
  type Run,
  type RunCheckpoint,
  type RunConfig,
  type RunEstimate,
  type RunEval,
  type RunMetric,
  type RunProbe,
  type RunSettings,
  type RunState,
} from '../../contract/index.ts';
import type { Overrides } from './lifecycle.ts';

interface RunRow {
  id: string;
  name: string;
  notes: string;
  state: RunState;
  state_reason: string | null;
  config: string;
  model_id: string;
  dataset_id: string;
  folder: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  step: number;
  total_steps: number;
  tokens: number;
  best_val_loss: number | null;
  best_step: number | null;
  retries: number;
  overrides: string;
  adapter_path: string | null;
  estimate: string | null;
  queue_seq: number;
}

/** The overrides a row holds; keys of earlier versions (`gradAccumulation`) are dropped. */
function storedOverrides(json: string): Overrides {
  const o = JSON.parse(json) as { sequenceLength?: unknown };
  return typeof o.sequenceLength === 'number' ? { sequenceLength: o.sequenceLength } : {};
}

function toRun(r: RunRow): Run {
  return {
    id: r.id,
    name: r.name,
    notes: r.notes,
    state: r.state,
    stateReason: r.state_reason,
    config: runConfigSchema.parse(JSON.parse(r.config)),
    modelId: r.model_id,
    datasetId: r.dataset_id,
    folder: r.folder,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    step: r.step,
    totalSteps: r.total_steps,
    tokens: r.tokens,
    bestValLoss: r.best_val_loss,
    bestStep: r.best_step,
    retries: r.retries,
    overrides: storedOverrides(r.overrides),
    adapterPath: r.adapter_path,
    estimate: r.estimate ? (JSON.parse(r.estimate) as RunEstimate) : null,
  };
}

/** Fields that can change after creation, in contract names. */
export type RunPatch = Partial<
  Pick<
    Run,
    | 'name'
    | 'notes'
    | 'state'
    | 'stateReason'
    | 'startedAt'
    | 'finishedAt'
    | 'step'
    | 'totalSteps'
    | 'tokens'
    | 'bestValLoss'
    | 'bestStep'
    | 'retries'
    | 'overrides'
    | 'adapterPath'
    | 'estimate'
  >
>;

const columns: Record<keyof RunPatch, string> = {
  name: 'name',
  notes: 'notes',
  state: 'state',
  stateReason: 'state_reason',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
  step: 'step',
  totalSteps: 'total_steps',
  tokens: 'tokens',
  bestValLoss: 'best_val_loss',
  bestStep: 'best_step',
  retries: 'retries',
  overrides: 'overrides',
  adapterPath: 'adapter_path',
  estimate: 'estimate',
};

export interface NewRun {
  id: string;
  name: string;
  config: RunConfig;
  modelId: string;
  datasetId: string;
  folder: string;
  totalSteps: number;
  estimate: RunEstimate | null;
}

const DEFAULT_SETTINGS: RunSettings = { autoResume: true };

export class RunStore {
  constructor(readonly db: Database.Database) {}

  insert(n: NewRun): Run {
    this.db
      .prepare(
        `INSERT INTO runs (id, name, state, config, model_id, dataset_id, folder, created_at, total_steps, estimate, queue_seq)
         VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM runs))`,
      )
      .run(
        n.id,
        n.name,
        JSON.stringify(n.config),
        n.modelId,
        n.datasetId,
        n.folder,
        new Date().toISOString(),
        n.totalSteps,
        n.estimate ? JSON.stringify(n.estimate) : null,
      );
    this.setSetting('runs.lastConfig', n.config);
    return this.require(n.id);
  }

  get(id: string): Run | null {
    const row = this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as RunRow | undefined;
    return row ? toRun(row) : null;
  }

  require(id: string): Run {
    const r = this.get(id);
    if (!r) throw new OvernightError('NOT_FOUND', `no run with id "${id}"`);
    return r;
  }

  list(filter: { state?: RunState; search?: string } = {}): Run[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.state) {
      where.push('state = ?');
      args.push(filter.state);
    }
    if (filter.search) {
      where.push(`(name LIKE ? ESCAPE '\\' OR notes LIKE ? ESCAPE '\\')`);
      const like = `%${filter.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      args.push(like, like);
    }
    const sql = `SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, rowid DESC`;
    return (this.db.prepare(sql).all(...args) as RunRow[]).map(toRun);
  }

  /** The run that should start next: the oldest queued one. */
  nextQueued(): Run | null {
    const row = this.db
      .prepare(`SELECT * FROM runs WHERE state = 'queued' ORDER BY queue_seq LIMIT 1`)
      .get() as RunRow | undefined;
    return row ? toRun(row) : null;
  }

  inState(state: RunState): Run[] {
    return (
      this.db
        .prepare('SELECT * FROM runs WHERE state = ? ORDER BY queue_seq')
        .all(state) as RunRow[]
    ).map(toRun);
  }

  update(id: string, patch: RunPatch): Run {
    const keys = Object.keys(patch) as (keyof RunPatch)[];
    if (keys.length > 0) {
      const sets = keys.map((k) => `${columns[k]} = ?`).join(', ');
      const vals = keys.map((k) => {
        const v = patch[k];
        return k === 'overrides' || k === 'estimate' ? (v == null ? null : JSON.stringify(v)) : v;
      });
      const r = this.db.prepare(`UPDATE runs SET ${sets} WHERE id = ?`).run(...vals, id);
      if (r.changes === 0) throw new OvernightError('NOT_FOUND', `no run with id "${id}"`);
    }
    return this.require(id);
  }

  /** Put a run at the back of the queue. */
  enqueue(id: string, reason: string | null): Run {
    this.db
      .prepare(
        `UPDATE runs SET state = 'queued', state_reason = ?, finished_at = NULL,
         queue_seq = (SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM runs) WHERE id = ?`,
      )
      .run(reason, id);
    return this.require(id);
  }

  delete(id: string): boolean {
    return this.db.prepare('DELETE FROM runs WHERE id = ?').run(id).changes > 0;
  }

  // --- what a run produces

  /** One transaction for a batch of trainer output; a repeated step replaces the earlier row. */
  writeBatch(id: string, b: { metrics: RunMetric[]; evals: RunEval[]; probes: RunProbe[] }): void {
    const m = this.db.prepare(
      `INSERT OR REPLACE INTO run_metrics (run_id, step, epoch, loss, lr, tokens_per_second, tokens, memory_bytes, grad_norm, time)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const e = this.db.prepare(
      `INSERT OR REPLACE INTO run_evals (run_id, step, val_loss, time) VALUES (?, ?, ?, ?)`,
    );
    const p = this.db.prepare(
      `INSERT OR REPLACE INTO run_probes (run_id, step, idx, prompt, output) VALUES (?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      for (const x of b.metrics) {
        m.run(
          id,
          x.step,
          x.epoch,
          x.loss,
          x.lr,
          x.tokensPerSecond,
          x.tokens,
          x.memoryBytes,
          x.gradNorm,
          x.time,
        );
      }
      for (const x of b.evals) e.run(id, x.step, x.valLoss, x.time);
      for (const x of b.probes) p.run(id, x.step, x.index, x.prompt, x.output);
      const last = b.metrics.at(-1);
      if (last)
        this.db
          .prepare('UPDATE runs SET step = ?, tokens = ? WHERE id = ?')
          .run(last.step, last.tokens, id);
    })();
  }

  /** Forget output past `step` (the trajectory a crash cut short, before resuming from `step`). */
  truncateAfter(id: string, step: number): void {
    this.db.transaction(() => {
      for (const t of ['run_metrics', 'run_evals', 'run_probes']) {
        this.db.prepare(`DELETE FROM ${t} WHERE run_id = ? AND step > ?`).run(id, step);
      }
      this.db.prepare('UPDATE runs SET step = ? WHERE id = ?').run(step, id);
    })();
  }

  metrics(id: string, fromStep = 0, toStep = Number.MAX_SAFE_INTEGER): RunMetric[] {
    const rows = this.db
      .prepare(
        `SELECT step, epoch, loss, lr, tokens_per_second AS tokensPerSecond, tokens, memory_bytes AS memoryBytes,
                grad_norm AS gradNorm, time
         FROM run_metrics WHERE run_id = ? AND step BETWEEN ? AND ? ORDER BY step`,
      )
      .all(id, fromStep, toStep);
    return rows as RunMetric[];
  }

  evals(id: string): RunEval[] {
    return this.db
      .prepare(
        'SELECT step, val_loss AS valLoss, time FROM run_evals WHERE run_id = ? ORDER BY step',
      )
      .all(id) as RunEval[];
  }

  probes(id: string): RunProbe[] {
    return this.db
      .prepare(
        'SELECT step, idx AS "index", prompt, output FROM run_probes WHERE run_id = ? ORDER BY step, idx',
      )
      .all(id) as RunProbe[];
  }

  checkpoints(id: string): RunCheckpoint[] {
    const rows = this.db
      .prepare(
        `SELECT c.step, c.path, c.val_loss AS valLoss, c.kind, c.created_at AS createdAt,
                (r.best_step IS NOT NULL AND r.best_step = c.step) AS isBest
         FROM run_checkpoints c JOIN runs r ON r.id = c.run_id WHERE c.run_id = ? ORDER BY c.step`,
      )
      .all(id) as (Omit<RunCheckpoint, 'isBest'> & { isBest: number })[];
    return rows.map((r) => ({ ...r, isBest: r.isBest === 1 }));
  }

  addCheckpoint(id: string, c: Omit<RunCheckpoint, 'isBest'>): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO run_checkpoints (run_id, step, path, val_loss, kind, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(id, c.step, c.path, c.valLoss, c.kind, c.createdAt);
  }

  removeCheckpoint(id: string, step: number): void {
    this.db.prepare('DELETE FROM run_checkpoints WHERE run_id = ? AND step = ?').run(id, step);
  }

  // --- settings

  getSetting<T>(key: string): T | null {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as
      { value: string } | undefined;
    return row ? (JSON.parse(row.value) as T) : null;
  }

  setSetting(key: string, value: unknown): void {
    this.db
      .prepare('INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)')
      .run(key, JSON.stringify(value));
  }

  settings(): RunSettings {
    return {
      ...DEFAULT_SETTINGS,
      ...(this.getSetting<Partial<RunSettings>>('runs.settings') ?? {}),
    };
  }

  setSettings(patch: Partial<RunSettings>): RunSettings {
    const next = { ...this.settings(), ...patch };
    this.setSetting('runs.settings', next);
    return next;
  }

  lastConfig(): RunConfig | null {
    const c = this.getSetting<unknown>('runs.lastConfig');
    const r = c ? runConfigSchema.safeParse(c) : null;
    return r?.success ? r.data : null;
  }
}
