/**
 * The run queue and the supervisor of the training process. One GPU, one run: the oldest queued
 * run starts when none is running. For the running run it
 *   - starts the training process (core/training/trainer-process.ts) with the run's job
 *     (job.ts jobFor), from the last kept checkpoint;
 *   - stores its metrics, evals and probes as they arrive, through one WriteBatch (batch.ts:
 *     batched writes, throttled UI events), flushed before a checkpoint is recorded;
 *   - applies early stopping and keeps the best checkpoint and the newest `keepCheckpoints`;
 *   - at the end sets the state lifecycle.endOf reads from the trainer's result; after a crash
 *     (lifecycle.decideAfterCrash) queues the run again to resume, with less memory after an OOM;
 *   - on engine start marks runs left `running` as interrupted and queues them when
 *     autoResume is on.
 * Adapters from checkpoints are written by export.ts.
 * Checkpoints: the trainer overwrites one file (`trainer/checkpoint.ovck`) atomically; each
 * one we keep is hard-linked (copied where links fail) to `checkpoints/step-NNNNNNN.ovck`.
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { ModelInfo, Run, RunConfig, RunPlacement } from '../../contract/index.ts';
import { OvernightError } from '../../contract/index.ts';
import type { TrainingEvent } from '../../contract/training.ts';
import type { EventBus } from '../rpc/events.ts';
import { TrainerProcess } from '../training/trainer-process.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import { WriteBatch } from './batch.ts';
import type { RunDatasets } from './datasets-port.ts';
import { RunExporter } from './export.ts';
import { jobFor, readRunInputs, writeRunInputs } from './job.ts';
import { readModelDims } from './model-dims.ts';
import { writePlacement } from './placement.ts';
import { checkpointAtSeqLen } from './rebase.ts';
import {
  checkpointsToDelete,
  decideAfterCrash,
  earlyStopStart,
  effectiveConfig,
  endOf,
  nextState,
  observeEval,
  resumePlan,
  type EarlyStopState,
  type StopIntent,
  type TrainerResult,
} from './lifecycle.ts';
import type { RunStore } from './store.ts';

export interface SupervisorDeps {
  store: RunStore;
  events: EventBus;
  models: { get(id: string): ModelInfo | null };
  datasets: RunDatasets;
  /** Options for the training process (tests pass inheritOutput: false). */
  trainerEnv?: NodeJS.ProcessEnv;
  inheritTrainerOutput?: boolean;
  log?: (msg: string) => void;
  /**
   * The device a config trains on: its free memory and trainer backend (core/runs/device.ts);
   * absent: the CPU with the system's free RAM.
   */
  device?: (cfg: RunConfig) => Promise<{ freeBytes: number; backend?: string }>;
}

interface Active {
  run: Run;
  cfg: RunConfig;
  trainFile: string;
  proc: TrainerProcess;
  intent: StopIntent | null;
  early: EarlyStopState;
  earlyReason: string | null;
  lastStep: number;
  batch: WriteBatch;
  result: TrainerResult & { done: Extract<TrainingEvent, { type: 'done' }> | null };
}

export const ckptName = (step: number) => `step-${String(step).padStart(7, '0')}.ovck`;

/** Training windows of the input a previous launch prepared (before it is rewritten), if any. */
function windowsOf(folder: string): number | null {
  const inputs = readRunInputs(folder);
  if (!inputs) return null;
  try {
    const r = new TokenDataReader(inputs.trainFile);
    const n = r.nWindows;
    r.close();
    return n;
  } catch {
    return null;
  }
}

export class RunSupervisor {
  private active: Active | null = null;
  private starting = false;
  /** The launch in progress (preparing data, starting the trainer), awaited by close(). */
  private launching: Promise<void> | null = null;
  private closed = false;
  /** Adapters from kept checkpoints (runs.exportCheckpoint, a best or early-stopped run's end). */
  readonly exporter: RunExporter;

  constructor(private readonly d: SupervisorDeps) {
    this.exporter = new RunExporter(d, () => this.active !== null || this.starting);
  }

  private log(msg: string) {
    this.d.log?.(msg);
  }

  /** Engine start: runs left running by a dead engine become interrupted, then maybe resume. */
  recover(): void {
    for (const r of this.d.store.inState('running')) {
      const reason =
        'The engine stopped while this run was training (app killed, crash or power loss).';
      this.setState(r.id, nextState('running', { type: 'engineRestarted' }), reason);
    }
    if (this.d.store.settings().autoResume) {
      for (const r of this.d.store.inState('interrupted')) {
        this.emitRun(
          this.d.store.enqueue(
            r.id,
            `${r.stateReason ?? 'Interrupted.'} Resuming from the last checkpoint.`,
          ),
        );
      }
    }
    this.pump();
  }

  runningId(): string | null {
    return this.active?.run.id ?? null;
  }

  /** A run is training, starting or waiting in the queue. */
  busy(): boolean {
    return this.active !== null || this.starting || this.d.store.nextQueued() !== null;
  }

  /**
   * Writes the running run's batched metrics, evals and probes now. Readers call this before
   * they query the store: a UI event may already have gone out for a step whose row is still in
   * the batch, and a page that subscribes after that event and then backfills from the store
   * must still find the step.
   */
  flushPending(id: string): void {
    if (this.active?.run.id === id) this.active.batch.flush();
  }

  /** Process id of the training process, while one runs. */
  trainerPid(): number | null {
    return this.active?.proc.pid ?? null;
  }

  /** Start the next queued run if nothing is running. */
  pump(): void {
    if (this.closed || this.active || this.starting) return;
    const next = this.d.store.nextQueued();
    if (!next) return;
    this.starting = true;
    this.launching = this.launch(next)
      .catch((err: unknown) => {
        const msg = err instanceof Error ? err.message : String(err);
        // Paused or cancelled while it was starting: that state stands.
        if (this.d.store.get(next.id)?.state !== 'queued') return;
        this.setState(next.id, 'failed', `Could not start: ${msg}`, {
          finishedAt: new Date().toISOString(),
        });
      })
      .finally(() => {
        this.starting = false;
        if (!this.active) this.pump();
      });
  }

  // --- requests from the user

  pause(id: string): Run {
    const a = this.activeFor(id);
    if (a) {
      a.intent = 'pause';
      a.proc.pause();
      return a.run;
    }
    const r = this.d.store.require(id);
    return this.setState(id, nextState(r.state, { type: 'pause' }), 'Paused before it started.');
  }

  /**
   * Back to the queue from the last checkpoint; a queued, running or completed run is returned
   * unchanged (lifecycle.resumePlan), so a resume after the engine start re-queued it still works.
   */
  resume(id: string): Run {
    const r = this.d.store.require(id);
    if (resumePlan(r.state) !== 'enqueue') {
      this.pump();
      return r;
    }
    const run = this.d.store.enqueue(
      id,
      r.state === 'paused' ? null : `Resumed after: ${r.stateReason ?? r.state}`,
    );
    this.emitRun(run);
    this.pump();
    return run;
  }

  cancel(id: string): Run {
    const a = this.activeFor(id);
    if (a) {
      a.intent = 'cancel';
      a.proc.cancel();
      return a.run;
    }
    const r = this.d.store.require(id);
    return this.setState(id, nextState(r.state, { type: 'cancel' }), 'Cancelled by the user.', {
      finishedAt: new Date().toISOString(),
    });
  }

  checkpointNow(id: string): void {
    const a = this.activeFor(id);
    if (!a)
      throw new OvernightError(
        'CONFLICT',
        `run ${id} is not running: only a running run can checkpoint`,
      );
    a.proc.checkpointNow();
  }

  /** Engine shutdown: checkpoint and stop the running run; it is interrupted and resumes on next start. */
  async close(timeoutMs = 30_000): Promise<void> {
    this.closed = true;
    // A launch still preparing its data stops before starting a trainer (the run stays queued);
    // wait for it, so nothing writes to the store after the engine closes it.
    await this.launching;
    const a = this.active;
    if (!a) return;
    a.intent = 'shutdown';
    a.proc.pause();
    const t = setTimeout(() => a.proc.kill(), timeoutMs);
    await a.proc.finished;
    await new Promise((r) => setImmediate(r));
    clearTimeout(t);
  }

  private activeFor(id: string): Active | null {
    this.d.store.require(id);
    return this.active && this.active.run.id === id ? this.active : null;
  }

  // --- running

  private async launch(queued: Run): Promise<void> {
    const cfg = effectiveConfig(queued.config, queued.overrides);
    const model = this.d.models.get(queued.modelId);
    if (!model) throw new Error(`its model ${queued.modelId} is no longer in the library`);
    if (!existsSync(model.path))
      throw new Error(`the model file ${model.path} no longer exists (moved or deleted?)`);

    const folder = queued.folder;
    mkdirSync(join(folder, 'checkpoints'), { recursive: true });
    const previousWindows = windowsOf(folder);
    const input = await this.d.datasets.prepare({
      datasetId: queued.datasetId,
      model,
      sequenceLength: cfg.sequenceLength,
      validationShare: cfg.validationShare,
      seed: cfg.seed,
      folder,
    });
    writeRunInputs(folder, { trainFile: input.trainFile, validationFile: input.validationFile });
    // Preparing takes a while: the user may have paused or cancelled the queued run meanwhile,
    // or the engine is closing (the run stays queued for the next start).
    if (this.closed || this.d.store.require(queued.id).state !== 'queued') return;

    // Resume from the newest checkpoint we kept; forget what came after it.
    const ckpts = this.d.store.checkpoints(queued.id).filter((c) => existsSync(c.path));
    const resumeFrom = ckpts.at(-1) ?? null;
    const fromStep = resumeFrom?.step ?? 0;
    // An out-of-memory fallback may have shortened the sequence (lifecycle.decideAfterCrash).
    const resumePath =
      resumeFrom &&
      checkpointAtSeqLen(
        resumeFrom.path,
        join(folder, 'trainer', `rebased-${ckptName(fromStep)}`),
        {
          seqLen: cfg.sequenceLength,
          oldWindows: previousWindows ?? input.trainWindows,
          newWindows: input.trainWindows,
        },
      );
    if (resumePath && resumePath !== resumeFrom?.path)
      this.log(
        `run ${queued.id}: checkpoint at step ${fromStep} rebased to sequence length ${cfg.sequenceLength}`,
      );
    this.d.store.truncateAfter(queued.id, fromStep);
    let early = earlyStopStart;
    for (const e of this.d.store.evals(queued.id))
      early = observeEval(early, e.step, e.valLoss, cfg);
    // The best evaluation may have been past the checkpoint (forgotten above).
    this.d.store.update(queued.id, { bestStep: early.bestStep, bestValLoss: early.bestLoss });

    // Probes are asked the way the data teaches: a chat dataset's prompt as a user turn in the
    // model's chat template (tokenized here, by the datasets domain); the label stays the text.
    const probePrompts = cfg.probePrompts.length
      ? ((await this.d.datasets.probePrompts?.({
          datasetId: queued.datasetId,
          model,
          prompts: cfg.probePrompts,
        })) ?? cfg.probePrompts.map((text) => ({ text })))
      : [];
    const device = (await this.d.device?.(cfg)) ?? { freeBytes: os.freemem() };
    const job = jobFor({ ...queued, config: cfg }, resumePath, {
      modelPath: model.path,
      trainFile: input.trainFile,
      validationFile: input.validationFile,
      probePrompts,
      backend: device.backend,
      memory: {
        dims: await readModelDims(model.path, model.vocabSize),
        freeBytes: device.freeBytes,
      },
    });

    const proc = new TrainerProcess({
      env: this.d.trainerEnv,
      inheritOutput: this.d.inheritTrainerOutput ?? false,
    });
    const startedAt = queued.startedAt ?? new Date().toISOString();
    const run = this.setState(
      queued.id,
      nextState(queued.state, { type: 'start' }),
      resumeFrom ? `Resumed from the checkpoint at step ${fromStep}.` : null,
      { startedAt, finishedAt: null },
    );
    const a: Active = {
      run,
      cfg,
      trainFile: input.trainFile,
      proc,
      intent: null,
      early,
      earlyReason: null,
      lastStep: fromStep,
      batch: new WriteBatch({
        write: (b) => {
          this.d.store.writeBatch(a.run.id, b);
          if (b.metrics.length) {
            a.run = this.d.store.require(a.run.id);
            this.emitRun(a.run);
          }
        },
        ui: (metrics) => this.d.events.emit('runs.step', { id: a.run.id, metrics }),
      }),
      result: { done: null, error: null },
    };
    this.active = a;
    proc.on('event', (e) => {
      try {
        this.onEvent(a, e);
      } catch (err) {
        this.log(
          `run ${a.run.id}: handling ${e.type} failed: ${(err as Error).stack ?? String(err)}`,
        );
      }
    });
    proc.start(job);
    this.log(
      `run ${run.id}: started${resumeFrom ? ` from step ${fromStep}` : ''} (pid ${proc.pid})`,
    );
    void proc.finished.then(() => this.onFinished(a));
  }

  /** The report is for the run page's details only: failing to write it must not stop the run. */
  private savePlacement(a: Active, placement: RunPlacement): void {
    try {
      writePlacement(a.run.folder, placement);
    } catch (err) {
      this.log(`run ${a.run.id}: cannot write the placement report: ${String(err)}`);
    }
  }

  private onEvent(a: Active, e: TrainingEvent): void {
    const id = a.run.id;
    switch (e.type) {
      case 'ready':
        if (e.placement) this.savePlacement(a, e.placement);
        if (e.totalSteps !== a.run.totalSteps)
          a.run = this.d.store.update(id, { totalSteps: e.totalSteps });
        this.emitRun(a.run);
        return;
      case 'step':
        a.lastStep = e.metric.step;
        a.batch.metric(e.metric);
        return;
      case 'eval': {
        const ev = e.eval;
        a.batch.eval(ev);
        const o = observeEval(a.early, ev.step, ev.valLoss, a.cfg);
        a.early = o;
        a.batch.flush();
        if (o.improved)
          a.run = this.d.store.update(id, { bestStep: o.bestStep, bestValLoss: o.bestLoss });
        this.d.events.emit('runs.eval', { id, ...ev });
        if (o.stop && a.intent === null && ev.step < a.run.totalSteps) {
          a.intent = 'early-stop';
          a.earlyReason =
            `Early stopping: validation loss did not improve by ${a.cfg.minDelta} for ${a.cfg.patience} evaluations ` +
            `(best ${o.bestLoss?.toFixed(4)} at step ${o.bestStep}).`;
          a.proc.pause();
        }
        return;
      }
      case 'probe':
        a.batch.probe(e.probe);
        this.d.events.emit('runs.probe', { id, step: e.probe.step, probes: [e.probe] });
        return;
      case 'checkpoint':
        this.onCheckpoint(a, e);
        return;
      case 'done':
        a.result.done = e;
        return;
      case 'error':
        a.result.error = { code: e.code, message: e.message };
        return;
      case 'log':
        this.log(`run ${id}: ${e.message}`);
        return;
    }
  }

  private onCheckpoint(a: Active, e: Extract<TrainingEvent, { type: 'checkpoint' }>): void {
    const id = a.run.id;
    a.batch.flush(); // metrics up to this step are stored before the checkpoint is
    const isBest = a.early.bestStep === e.step;
    const onTimer = e.kind !== 'interval' || e.step % a.cfg.checkpointInterval === 0;
    if (!onTimer && !isBest) return;
    const dest = join(a.run.folder, 'checkpoints', ckptName(e.step));
    if (existsSync(dest)) unlinkSync(dest);
    try {
      linkSync(e.path, dest);
    } catch {
      copyFileSync(e.path, dest);
    }
    const evalAt = this.d.store.evals(id).find((x) => x.step === e.step);
    const kind = e.kind === 'interval' && !onTimer ? 'best' : e.kind;
    const row = {
      step: e.step,
      path: dest,
      valLoss: evalAt?.valLoss ?? null,
      kind,
      createdAt: new Date().toISOString(),
    } as const;
    this.d.store.addCheckpoint(id, row);
    const all = this.d.store.checkpoints(id);
    for (const step of checkpointsToDelete(
      all.map((c) => c.step),
      a.cfg.keepCheckpoints,
      a.early.bestStep,
    )) {
      const c = all.find((x) => x.step === step);
      if (c) rmSync(c.path, { force: true });
      this.d.store.removeCheckpoint(id, step);
    }
    this.d.events.emit('runs.checkpoint', { id, ...row, isBest });
  }

  private async onFinished(a: Active): Promise<void> {
    const id = a.run.id;
    a.batch.close();
    try {
      const end = endOf(a.result, a.intent, a.earlyReason);
      const finishedAt = new Date().toISOString();
      if (end.state === 'crash') this.onCrash(a, end.error);
      else if (end.state === 'completed') {
        const lastAdapter = end.adapter === 'trainer' ? (a.result.done?.adapterPath ?? null) : null;
        const adapterPath = await this.finalAdapter(a, lastAdapter);
        this.setState(id, end.state, end.reason, { finishedAt, adapterPath });
      } else this.setState(id, end.state, end.reason, end.finished ? { finishedAt } : {});
    } catch (err) {
      this.setState(id, 'failed', `Finishing the run failed: ${(err as Error).message}`, {
        finishedAt: new Date().toISOString(),
      });
    } finally {
      this.active = null;
      this.pump();
    }
  }

  /** A death that is not final: failed with the reason, and queued again while retries last. */
  private onCrash(a: Active, err: { code: string; message: string }): void {
    const id = a.run.id;
    const run = this.d.store.require(id);
    const dec = decideAfterCrash(run.config, run.overrides, run.retries, {
      message: err.message,
      oom: err.code === 'E_OOM',
      step: a.lastStep,
    });
    this.setState(id, 'failed', dec.reason, {
      overrides: dec.overrides,
      finishedAt: new Date().toISOString(),
    });
    if (dec.retry) {
      this.d.store.update(id, { retries: run.retries + 1 });
      this.emitRun(this.d.store.enqueue(id, dec.reason));
    }
  }

  /**
   * The adapter a finished run ends with: the trainer's last one, or one written from the
   * kept checkpoint of the best evaluation (or of the early-stopping pause).
   */
  private async finalAdapter(a: Active, lastAdapter: string | null): Promise<string | null> {
    const ckpts = this.d.store.checkpoints(a.run.id);
    const wantBest = a.cfg.finalAdapter === 'best' && a.early.bestStep !== null;
    const step = wantBest ? a.early.bestStep! : a.lastStep;
    if (lastAdapter && step === a.lastStep) return lastAdapter;
    const c = ckpts.find((x) => x.step === step) ?? ckpts.at(-1);
    if (!c) return lastAdapter;
    const out = join(a.run.folder, wantBest ? 'adapter-best.gguf' : 'adapter-last.gguf');
    return this.exporter.fromCheckpoint(a.run, {
      step: c.step,
      path: c.path,
      dataPath: a.trainFile,
      out,
    });
  }

  private setState(
    id: string,
    state: Run['state'],
    reason: string | null,
    extra: Parameters<RunStore['update']>[1] = {},
  ): Run {
    const run = this.d.store.update(id, { ...extra, state, stateReason: reason });
    if (this.active?.run.id === id) this.active.run = run;
    this.emitRun(run);
    return run;
  }

  private emitRun(run: Run): void {
    this.d.events.emit('runs.state', run);
  }
}
