/**
 * The run queue and the supervisor of the training process. One GPU, one run: the oldest queued
 * run starts when none is running. For the running run it
 *   - builds the trainer's job (core/training/job.ts) from the config, the prepared data and the
 *     last checkpoint, and starts the training process (core/training/trainer-process.ts);
 *   - writes its events to SQLite in batches (one transaction every FLUSH_EVENTS events or
 *     FLUSH_MS, and always before a checkpoint is recorded, so a stored checkpoint never runs
 *     ahead of the stored metrics) and forwards them to the UI at most every UI_MS;
 *   - applies early stopping and keeps the best checkpoint and the newest `keepCheckpoints`;
 *   - on a crash marks the run failed with the reason, then (lifecycle.decideAfterCrash)
 *     queues it again to resume from its last checkpoint, with less memory after an OOM;
 *   - on engine start marks runs left `running` as interrupted and queues them when
 *     autoResume is on.
 * Checkpoints: the trainer overwrites one file (`trainer/checkpoint.ovck`) atomically; each
 * one we keep is hard-linked (copied where links fail) to `checkpoints/step-NNNNNNN.ovck`.
 */
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Run, RunConfig, RunMetric, RunProbe, RunEval } from '../../contract/index.ts';
import { OvernightError } from '../../contract/index.ts';
import type { EventBus } from '../rpc/events.ts';
import type { TrainingEvent, TrainingJob } from '../training/job.ts';
import { TrainerProcess } from '../training/trainer-process.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import type { RunDatasets } from './datasets-port.ts';
import { checkpointSeqLen, rebaseCheckpoint } from './rebase.ts';
import {
  checkpointsToDelete,
  decideAfterCrash,
  earlyStopStart,
  effectiveConfig,
  nextState,
  observeEval,
  resumePlan,
  type EarlyStopState,
} from './lifecycle.ts';
import type { RunStore } from './store.ts';
import type { ModelInfo } from '../../contract/index.ts';

/** Batch size and age of metric writes: at ~10 steps/s on a tiny model that is ~1 transaction/s. */
export const FLUSH_EVENTS = 50;
export const FLUSH_MS = 1000;
/** UI step events: at most 4 per second per run, each carrying every step since the last. */
export const UI_MS = 250;

export interface SupervisorDeps {
  store: RunStore;
  events: EventBus;
  models: { get(id: string): ModelInfo | null };
  datasets: RunDatasets;
  /** Options for the training process (tests pass inheritOutput: false). */
  trainerEnv?: NodeJS.ProcessEnv;
  inheritTrainerOutput?: boolean;
  log?: (msg: string) => void;
}

type Intent = 'pause' | 'cancel' | 'early-stop' | 'shutdown';

interface Active {
  run: Run;
  cfg: RunConfig;
  trainFile: string;
  proc: TrainerProcess;
  intent: Intent | null;
  early: EarlyStopState;
  earlyReason: string | null;
  lastStep: number;
  pending: { metrics: RunMetric[]; evals: RunEval[]; probes: RunProbe[] };
  ui: RunMetric[];
  flushTimer: NodeJS.Timeout | null;
  uiTimer: NodeJS.Timeout | null;
  lastFlush: number;
  error: { code: string; message: string } | null;
  done: Extract<TrainingEvent, { type: 'done' }> | null;
}

/** Where launch records the trainer input files of the run folder (an export needs them). */
const INPUT_FILE = 'input.json';

export const ckptName = (step: number) => `step-${String(step).padStart(7, '0')}.ovck`;

/** Training windows of the input a previous launch prepared (before it is rewritten), if any. */
function windowsOf(inputFile: string): number | null {
  if (!existsSync(inputFile)) return null;
  try {
    const { trainFile } = JSON.parse(readFileSync(inputFile, 'utf8')) as { trainFile: string };
    const r = new TokenDataReader(trainFile);
    const n = r.nWindows;
    r.close();
    return n;
  } catch {
    return null;
  }
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The trainer's AdamW and clipping settings of a config: every value explicit. */
export function optimizerOf(cfg: RunConfig): TrainingJob['optimizer'] {
  return {
    lr: cfg.learningRate,
    beta1: cfg.adamBeta1,
    beta2: cfg.adamBeta2,
    weightDecay: cfg.weightDecay,
    clipNorm: cfg.gradClipNorm,
  };
}

export class RunSupervisor {
  private active: Active | null = null;
  private starting = false;
  /** The launch in progress (preparing data, starting the trainer), awaited by close(). */
  private launching: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly d: SupervisorDeps) {}

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
    if (this.active?.run.id === id) this.flush(this.active);
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
    const previousWindows = windowsOf(join(folder, INPUT_FILE));
    const input = await this.d.datasets.prepare({
      datasetId: queued.datasetId,
      model,
      sequenceLength: cfg.sequenceLength,
      validationShare: cfg.validationShare,
      seed: cfg.seed,
      folder,
    });
    writeFileSync(
      join(folder, INPUT_FILE),
      JSON.stringify({ trainFile: input.trainFile, validationFile: input.validationFile }),
    );
    // Preparing takes a while: the user may have paused or cancelled the queued run meanwhile,
    // or the engine is closing (the run stays queued for the next start).
    if (this.closed || this.d.store.require(queued.id).state !== 'queued') return;

    // Resume from the newest checkpoint we kept; forget what came after it.
    const ckpts = this.d.store.checkpoints(queued.id).filter((c) => existsSync(c.path));
    const resumeFrom = ckpts.at(-1) ?? null;
    const fromStep = resumeFrom?.step ?? 0;
    let resumePath = resumeFrom?.path ?? null;
    if (resumePath && checkpointSeqLen(resumePath) !== cfg.sequenceLength) {
      // An out-of-memory fallback shortened the sequence (lifecycle.decideAfterCrash).
      const rebased = join(folder, 'trainer', `rebased-${ckptName(fromStep)}`);
      mkdirSync(join(folder, 'trainer'), { recursive: true });
      rebaseCheckpoint(resumePath, rebased, {
        seqLen: cfg.sequenceLength,
        oldWindows: previousWindows ?? input.trainWindows,
        newWindows: input.trainWindows,
      });
      this.log(
        `run ${queued.id}: checkpoint at step ${fromStep} rebased to sequence length ${cfg.sequenceLength}`,
      );
      resumePath = rebased;
    }
    this.d.store.truncateAfter(queued.id, fromStep);
    let early = earlyStopStart;
    for (const e of this.d.store.evals(queued.id))
      early = observeEval(early, e.step, e.valLoss, cfg);
    // The best evaluation may have been past the checkpoint (forgotten above).
    this.d.store.update(queued.id, { bestStep: early.bestStep, bestValLoss: early.bestLoss });

    // Probes are asked the way the data teaches: a chat dataset's prompt as a user turn in the
    // model's chat template (tokenized here, by the datasets domain); the label stays the text.
    const probePrompts: NonNullable<TrainingJob['probes']>['prompts'] = cfg.probePrompts.length
      ? ((await this.d.datasets.probePrompts?.({
          datasetId: queued.datasetId,
          model,
          prompts: cfg.probePrompts,
        })) ?? cfg.probePrompts.map((text) => ({ text })))
      : [];
    // The trainer checkpoints on a timer; to be able to keep the checkpoint of the best eval,
    // that timer also fires at every eval (extra ones are dropped unless best).
    const keepBest = cfg.validationShare > 0 && (cfg.earlyStopping || cfg.finalAdapter === 'best');
    const job: TrainingJob = {
      modelPath: model.path,
      dataPath: input.trainFile,
      evalDataPath: input.validationFile,
      adapterPath: join(folder, 'adapter-last.gguf'),
      lora: {
        rank: cfg.loraRank,
        alpha: cfg.loraAlpha,
        targets: [...cfg.loraTargets],
        seed: cfg.seed,
      },
      optimizer: optimizerOf(cfg),
      schedule: { type: cfg.lrSchedule, warmupSteps: cfg.warmupSteps, minLr: cfg.minLearningRate },
      windowsPerStep: cfg.effectiveBatch,
      maxSteps: queued.totalSteps > 0 ? queued.totalSteps : cfg.maxSteps,
      epochs: cfg.epochs,
      evalInterval: cfg.validationShare > 0 ? cfg.evalInterval : 0,
      checkpoint: {
        dir: join(folder, 'trainer'),
        interval: keepBest ? gcd(cfg.evalInterval, cfg.checkpointInterval) : cfg.checkpointInterval,
        resumeFrom: resumePath,
      },
      probes: probePrompts.length ? { prompts: probePrompts, maxTokens: 48 } : undefined,
      seed: cfg.seed,
      threads: cfg.threads,
      gpuLayers: cfg.backend === 'cpu' ? 0 : cfg.gpuLayers < 0 ? 999 : cfg.gpuLayers,
      metadata: { 'overnight.run.id': queued.id, 'overnight.run.name': queued.name },
    };

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
      pending: { metrics: [], evals: [], probes: [] },
      ui: [],
      flushTimer: null,
      uiTimer: null,
      lastFlush: Date.now(),
      error: null,
      done: null,
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

  private onEvent(a: Active, e: TrainingEvent): void {
    const id = a.run.id;
    switch (e.type) {
      case 'ready':
        if (e.totalSteps !== a.run.totalSteps)
          a.run = this.d.store.update(id, { totalSteps: e.totalSteps });
        this.emitRun(a.run);
        return;
      case 'step': {
        const m: RunMetric = {
          step: e.step,
          epoch: e.epoch,
          loss: e.loss,
          lr: e.lr,
          tokensPerSecond: e.tokensPerSecond,
          tokens: e.trainedTokens,
          memoryBytes: e.deviceMemoryBytes ?? e.peakRssBytes,
          // JSON over IPC turns a non-finite norm into null.
          gradNorm: Number.isFinite(e.gradNorm) ? e.gradNorm : null,
          time: Date.now(),
        };
        a.lastStep = e.step;
        a.pending.metrics.push(m);
        a.ui.push(m);
        this.scheduleUi(a);
        this.maybeFlush(a);
        return;
      }
      case 'eval': {
        const ev: RunEval = { step: e.step, valLoss: e.valLoss, time: Date.now() };
        a.pending.evals.push(ev);
        const o = observeEval(a.early, e.step, e.valLoss, a.cfg);
        a.early = o;
        this.flush(a);
        if (o.improved)
          a.run = this.d.store.update(id, { bestStep: o.bestStep, bestValLoss: o.bestLoss });
        this.d.events.emit('runs.eval', { id, ...ev });
        if (o.stop && a.intent === null && e.step < a.run.totalSteps) {
          a.intent = 'early-stop';
          a.earlyReason =
            `Early stopping: validation loss did not improve by ${a.cfg.minDelta} for ${a.cfg.patience} evaluations ` +
            `(best ${o.bestLoss?.toFixed(4)} at step ${o.bestStep}).`;
          a.proc.pause();
        }
        return;
      }
      case 'probe': {
        const p: RunProbe = { step: e.step, index: e.index, prompt: e.prompt, output: e.output };
        a.pending.probes.push(p);
        this.d.events.emit('runs.probe', { id, step: e.step, probes: [p] });
        return;
      }
      case 'checkpoint':
        this.onCheckpoint(a, e);
        return;
      case 'done':
        a.done = e;
        return;
      case 'error':
        a.error = { code: e.code, message: e.message };
        return;
      case 'log':
        this.log(`run ${id}: ${e.message}`);
        return;
    }
  }

  private onCheckpoint(a: Active, e: Extract<TrainingEvent, { type: 'checkpoint' }>): void {
    const id = a.run.id;
    this.flush(a); // metrics up to this step are stored before the checkpoint is
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
    this.clearTimers(a);
    this.flush(a);
    this.emitUi(a);
    const now = () => new Date().toISOString();
    try {
      const done = a.done;
      if (done?.status === 'completed') {
        const adapter = await this.finalAdapter(a, done.adapterPath);
        this.setState(id, 'completed', a.earlyReason ?? `Completed ${done.step} steps.`, {
          finishedAt: now(),
          adapterPath: adapter,
        });
      } else if (done?.status === 'paused' && a.intent === 'early-stop') {
        const adapter = await this.finalAdapter(a, null);
        this.setState(id, 'completed', a.earlyReason, { finishedAt: now(), adapterPath: adapter });
      } else if (done?.status === 'paused' && a.intent === 'shutdown') {
        this.setState(
          id,
          'interrupted',
          'The app was closed during the run; it resumes from its checkpoint.',
        );
      } else if (done?.status === 'paused') {
        this.setState(id, 'paused', `Paused at step ${done.step}.`);
      } else if (done?.status === 'cancelled' && a.intent === 'shutdown') {
        this.setState(
          id,
          'interrupted',
          'The app was closed during the run; it resumes from its last checkpoint.',
        );
      } else if (done?.status === 'cancelled') {
        this.setState(id, 'cancelled', 'Cancelled by the user.', { finishedAt: now() });
      } else {
        this.onCrash(a);
      }
    } catch (err) {
      this.setState(id, 'failed', `Finishing the run failed: ${(err as Error).message}`, {
        finishedAt: now(),
      });
    } finally {
      this.active = null;
      this.pump();
    }
  }

  private onCrash(a: Active): void {
    const id = a.run.id;
    const err = a.error ?? {
      code: 'E_CRASH',
      message: 'the training process ended without a result',
    };
    if (a.intent === 'shutdown') {
      this.setState(id, 'interrupted', `The app was closed during the run (${err.message}).`);
      return;
    }
    if (
      [
        'E_CONFIG',
        'E_MODEL',
        'E_DATA',
        'E_NO_TOKENS',
        'E_ARCH',
        'E_TYPE',
        'E_NO_ADDON',
        'E_CHECKPOINT',
        'E_DIVERGED',
      ].includes(err.code)
    ) {
      this.setState(id, 'failed', `${err.code}: ${err.message}`, {
        finishedAt: new Date().toISOString(),
      });
      return;
    }
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
    return this.exportCheckpoint(a.run, { step: c.step, path: c.path, dataPath: a.trainFile, out });
  }

  /**
   * Write an adapter GGUF from a checkpoint with the real trainer: resume from it with maxSteps
   * equal to its step, so the trainer loads the state, takes no step and saves the adapter.
   */
  async exportCheckpoint(
    run: Run,
    {
      step,
      path: ckptPath,
      dataPath,
      out,
    }: { step: number; path: string; dataPath: string; out: string },
  ): Promise<string> {
    const cfg = effectiveConfig(run.config, run.overrides);
    const model = this.d.models.get(run.modelId);
    if (!model) throw new Error(`model ${run.modelId} is no longer in the library`);
    const tmpDir = join(run.folder, 'export-tmp');
    mkdirSync(tmpDir, { recursive: true });
    // A checkpoint from before an out-of-memory fallback has the longer sequence of its time;
    // the data file has the current one. No step is taken, so only the recorded length matters.
    const data = new TokenDataReader(dataPath);
    const { seqLen, nWindows } = data;
    data.close();
    let from = ckptPath;
    if (checkpointSeqLen(ckptPath) !== seqLen) {
      from = join(tmpDir, 'rebased.ovck');
      rebaseCheckpoint(ckptPath, from, { seqLen, oldWindows: nWindows, newWindows: nWindows });
    }
    const proc = new TrainerProcess({
      env: this.d.trainerEnv,
      inheritOutput: this.d.inheritTrainerOutput ?? false,
    });
    proc.start({
      modelPath: model.path,
      dataPath,
      adapterPath: out,
      lora: {
        rank: cfg.loraRank,
        alpha: cfg.loraAlpha,
        targets: [...cfg.loraTargets],
        seed: cfg.seed,
      },
      optimizer: optimizerOf(cfg),
      schedule: { type: cfg.lrSchedule },
      windowsPerStep: cfg.effectiveBatch,
      maxSteps: step,
      checkpoint: { dir: tmpDir, resumeFrom: from },
      seed: cfg.seed,
      threads: cfg.threads,
      gpuLayers: cfg.backend === 'cpu' ? 0 : cfg.gpuLayers < 0 ? 999 : cfg.gpuLayers,
      metadata: { 'overnight.run.id': run.id, 'overnight.checkpoint.step': String(step) },
    });
    const fin = await proc.finished;
    rmSync(tmpDir, { recursive: true, force: true });
    if (fin.type === 'error')
      throw new Error(`exporting the checkpoint at step ${step}: ${fin.code}: ${fin.message}`);
    if (!fin.adapterPath)
      throw new Error(`exporting the checkpoint at step ${step} wrote no adapter`);
    return fin.adapterPath;
  }

  /** runs.exportCheckpoint: an adapter GGUF from a kept checkpoint, beside the run's others. */
  async exportKept(id: string, step: number): Promise<string> {
    const run = this.d.store.require(id);
    const c = this.d.store.checkpoints(id).find((x) => x.step === step);
    if (!c || !existsSync(c.path)) {
      throw new OvernightError(
        'NOT_FOUND',
        `run "${run.name}" has no kept checkpoint at step ${step}`,
      );
    }
    if (this.active || this.starting) {
      throw new OvernightError(
        'CONFLICT',
        'a run is training: exporting loads the model too; try again when the device is free',
      );
    }
    const inputFile = join(run.folder, INPUT_FILE);
    if (!existsSync(inputFile))
      throw new OvernightError(
        'FILE_NOT_FOUND',
        `${inputFile} is missing: the run folder is incomplete`,
      );
    const { trainFile } = JSON.parse(readFileSync(inputFile, 'utf8')) as { trainFile: string };
    const out = join(run.folder, `adapter-step-${step}.gguf`);
    return this.exportCheckpoint(run, { step, path: c.path, dataPath: trainFile, out });
  }

  // --- writes and events

  private maybeFlush(a: Active): void {
    if (a.pending.metrics.length >= FLUSH_EVENTS || Date.now() - a.lastFlush >= FLUSH_MS) {
      this.flush(a);
      return;
    }
    a.flushTimer ??= setTimeout(() => {
      a.flushTimer = null;
      this.flush(a);
    }, FLUSH_MS);
  }

  private flush(a: Active): void {
    if (a.flushTimer) {
      clearTimeout(a.flushTimer);
      a.flushTimer = null;
    }
    a.lastFlush = Date.now();
    const p = a.pending;
    if (!p.metrics.length && !p.evals.length && !p.probes.length) return;
    a.pending = { metrics: [], evals: [], probes: [] };
    this.d.store.writeBatch(a.run.id, p);
    if (p.metrics.length) {
      a.run = this.d.store.require(a.run.id);
      this.emitRun(a.run);
    }
  }

  private scheduleUi(a: Active): void {
    a.uiTimer ??= setTimeout(() => {
      a.uiTimer = null;
      this.emitUi(a);
    }, UI_MS);
  }

  private emitUi(a: Active): void {
    if (!a.ui.length) return;
    const metrics = a.ui;
    a.ui = [];
    this.d.events.emit('runs.step', { id: a.run.id, metrics });
  }

  private clearTimers(a: Active): void {
    if (a.flushTimer) clearTimeout(a.flushTimer);
    if (a.uiTimer) clearTimeout(a.uiTimer);
    a.flushTimer = a.uiTimer = null;
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
