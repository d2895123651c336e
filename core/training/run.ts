// One training run inside the training process, in the order it happens (llm.c's story):
// check the job, load the data, plan the run, read the checkpoint to resume from, open the
// trainer, then the loop (one optimizer step: forward, backward, update; validation every N
// steps, probes every M, a checkpoint every K or when asked), then save the adapter.
// It is not the IPC (worker.ts wraps it), not the numerics (the native trainer,
// native/ts/binding.ts) and not the job's schema or defaults (contract/training.ts).
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { ROUTE_CHUNK_MIB } from '../../contract/runs.ts';
import { parseTrainingJob, PipeError } from '../../contract/training.ts';
import type {
  ParsedTrainingJob,
  TrainerErrorCode,
  TrainingEvent,
  TrainingJob,
} from '../../contract/training.ts';
import { NativeError, Trainer, peakRss } from '../../native/ts/binding.ts';
import type { OpenOptions } from '../../native/ts/binding.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { CHECKPOINT_FILE, readCheckpoint, writeCheckpoint } from './checkpoint.ts';
import type { CheckpointMeta } from './checkpoint.ts';
import { lrAt, mulberry32, takeWindows } from './schedule.ts';
import type { DataCursor, LrSchedule } from './schedule.ts';

export class TrainingError extends Error {
  constructor(
    readonly code: TrainerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** sha256 of the file size and its first 8 MiB (GGUF header, metadata and the first tensors). */
export function modelFingerprint(path: string): string {
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  try {
    const n = Math.min(size, 8 << 20); // 8 << 20 = 8 MiB
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 0);
    return 'sha256-8m:' + createHash('sha256').update(String(size)).update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** The job with every default filled in (the zod schema in contract/training.ts), or E_CONFIG / E_MODEL. */
function validateJob(raw: TrainingJob): ParsedTrainingJob {
  let job: ParsedTrainingJob;
  try {
    job = parseTrainingJob(raw);
  } catch (e) {
    if (e instanceof PipeError) throw new TrainingError('E_CONFIG', e.message);
    throw e;
  }
  if (!existsSync(job.modelPath))
    throw new TrainingError('E_MODEL', `model file ${job.modelPath} does not exist`);
  return job;
}

/**
 * The native trainer's open options for a job, every value from the job (the binding holds no
 * defaults). One place: the training run opens with it, and so does `npm run bench:memory`
 * (test/bench/memory.bench.ts), which measures exactly what a run would open.
 */
export function trainerOpenOptions(job: ParsedTrainingJob, seqLen: number): OpenOptions {
  return {
    modelPath: job.modelPath,
    targets: job.lora.targets,
    rank: job.lora.rank,
    alpha: job.lora.alpha,
    seed: job.lora.seed ?? job.seed,
    seqLen,
    threads: job.threads,
    gpuLayers: job.gpuLayers,
    backend: job.backend,
    backwardRoute: 'auto',
    routeChunkMiB: ROUTE_CHUNK_MIB,
    checkpointing: job.checkpointing,
    lossChunk: job.lossChunk,
    microBatch: job.microBatch,
  };
}

/** What a checkpoint must share with the job that resumes it; every checkpoint records it. */
type CheckpointMatch = CheckpointMeta['match'];
type Resume = ReturnType<typeof readCheckpoint>;
type CheckpointKind = 'interval' | 'manual' | 'pause' | 'final';

/** The run's fixed facts, worked out once from the job and the data before the model loads. */
interface RunPlan {
  seqLen: number;
  trainTokensPerEpoch: number;
  totalSteps: number;
  fingerprint: string;
  match: CheckpointMatch;
  schedule: LrSchedule;
  /** Optimizer steps between validation passes, probes and checkpoints (0 = none on a timer). */
  evalEvery: number;
  probeEvery: number;
  checkpointEvery: number;
}

/** The data checks and the plan; throws E_DATA / E_NO_TOKENS for data that cannot train. */
function planRun(
  job: ParsedTrainingJob,
  data: TokenDataReader,
  evalData: TokenDataReader | null,
): RunPlan {
  const seqLen = data.seqLen;
  if (evalData && evalData.seqLen !== seqLen) {
    throw new TrainingError(
      'E_DATA',
      `evaluation data has seqLen ${evalData.seqLen}, training data ${seqLen}`,
    );
  }
  if (data.nWindows === 0) throw new TrainingError('E_NO_TOKENS', `${job.dataPath} has no windows`);
  let trainTokensPerEpoch = 0;
  for (let i = 0; i < data.nWindows; i++) trainTokensPerEpoch += data.trainedTokens(i);
  if (trainTokensPerEpoch === 0) {
    throw new TrainingError(
      'E_NO_TOKENS',
      `${job.dataPath}: no trained tokens (every label is -1; check the assistant-only mask)`,
    );
  }
  const totalSteps =
    job.maxSteps ??
    Math.max(1, Math.ceil(((job.epochs ?? 1) * data.nWindows) / job.windowsPerStep));
  const fingerprint = modelFingerprint(job.modelPath);
  return {
    seqLen,
    trainTokensPerEpoch,
    totalSteps,
    fingerprint,
    match: {
      modelFingerprint: fingerprint,
      rank: job.lora.rank,
      alpha: job.lora.alpha,
      targets: job.lora.targets,
      seqLen,
      windowsPerStep: job.windowsPerStep,
      seed: job.seed,
    },
    schedule: {
      type: job.schedule.type,
      lr: job.optimizer.lr,
      warmupSteps: job.schedule.warmupSteps,
      minLr: job.schedule.minLr,
      totalSteps,
    },
    evalEvery: job.evalInterval,
    probeEvery: job.probes?.interval ?? job.evalInterval,
    checkpointEvery: job.checkpoint?.interval ?? 0,
  };
}

/** The checkpoint to resume from, or E_CHECKPOINT naming the first field that differs from ours. */
function readResume(pathOrDir: string, match: CheckpointMatch): Resume {
  const resume = readCheckpoint(pathOrDir);
  const theirs = resume.meta.match;
  for (const k of Object.keys(match) as (keyof CheckpointMatch)[]) {
    if (JSON.stringify(theirs[k]) !== JSON.stringify(match[k])) {
      throw new TrainingError(
        'E_CHECKPOINT',
        `checkpoint ${resume.path} was made with ${k} = ${JSON.stringify(theirs[k])}, this job has ${JSON.stringify(match[k])}`,
      );
    }
  }
  return resume;
}

export interface RunControl {
  cancel: boolean;
  pause: boolean;
  checkpointNow: boolean;
}

export class TrainingRun {
  readonly control: RunControl = { cancel: false, pause: false, checkpointNow: false };
  private native: Trainer | null = null;

  // Set by run() before the loop starts.
  private job!: ParsedTrainingJob;
  private data!: TokenDataReader;
  private evalData: TokenDataReader | null = null;
  private plan!: RunPlan;

  // Where the loop stands: what a checkpoint records besides the trainer's state.
  private step = 0;
  private cursor: DataCursor = { epoch: 0, index: 0 };
  private rng = mulberry32(0);
  private trainedTokens = 0;
  private elapsedBefore = 0; // ms trained before the resumed checkpoint
  private startedAt = 0;

  constructor(
    private readonly input: TrainingJob,
    private readonly emit: (e: TrainingEvent) => void,
  ) {}

  /** Cancels within one micro-batch: the in-flight native step rejects with E_CANCELLED. */
  cancel(): void {
    this.control.cancel = true;
    this.native?.cancel(true);
  }
  pause(): void {
    this.control.pause = true;
  }
  checkpointNow(): void {
    this.control.checkpointNow = true;
  }

  async run(): Promise<void> {
    const job = (this.job = validateJob(this.input));
    this.data = new TokenDataReader(job.dataPath);
    this.evalData = job.evalDataPath ? new TokenDataReader(job.evalDataPath) : null;
    try {
      await this.train();
    } finally {
      this.data.close();
      this.evalData?.close();
      this.native?.close();
      this.native = null;
    }
  }

  /** The whole story, in order. */
  private async train(): Promise<void> {
    const job = this.job;
    const plan = (this.plan = planRun(job, this.data, this.evalData));
    // read and check the checkpoint before loading the model
    const resumeFrom = job.checkpoint?.resumeFrom;
    const resume = resumeFrom ? readResume(resumeFrom, plan.match) : null;
    await this.openTrainer();
    this.rng = mulberry32(job.seed);
    if (resume) this.restore(resume);
    this.emitReady();

    if (job.checkpoint) mkdirSync(job.checkpoint.dir, { recursive: true });
    mkdirSync(dirname(job.adapterPath), { recursive: true });
    this.startedAt = Date.now();

    try {
      while (this.step < plan.totalSteps) {
        if (this.control.cancel) throw new NativeError('E_CANCELLED', 'cancelled');
        await this.trainStep(); // forward, backward, update
        const step = this.step;
        const last = step === plan.totalSteps;
        if ((plan.evalEvery > 0 && step % plan.evalEvery === 0) || last) await this.evaluate();
        if ((plan.probeEvery > 0 && step % plan.probeEvery === 0) || last) await this.probe();
        if (plan.checkpointEvery > 0 && step % plan.checkpointEvery === 0)
          this.checkpoint('interval');
        else if (this.control.checkpointNow) this.checkpoint('manual');
        this.control.checkpointNow = false;
        if (this.control.pause && !last) {
          this.checkpoint('pause');
          this.emit({ type: 'done', status: 'paused', step, adapterPath: null });
          return;
        }
      }
    } catch (e) {
      if (e instanceof NativeError && e.code === 'E_CANCELLED') {
        this.emit({ type: 'done', status: 'cancelled', step: this.step, adapterPath: null });
        return;
      }
      throw e;
    }
    await this.finish();
  }

  /** The open trainer (between openTrainer and the end of run). */
  private get trainer(): Trainer {
    if (!this.native) throw new Error('the trainer is not open');
    return this.native;
  }

  private async openTrainer(): Promise<void> {
    this.native = await Trainer.open(trainerOpenOptions(this.job, this.plan.seqLen));
    // a cancel that arrived while the model loaded
    if (this.control.cancel) this.native.cancel(true);
  }

  private restore(resume: Resume): void {
    const { meta } = resume;
    this.trainer.setState(resume.state, meta.adamT);
    this.step = meta.step;
    this.cursor = meta.cursor;
    this.rng = mulberry32(meta.rngState);
    this.trainedTokens = meta.trainedTokens;
    this.elapsedBefore = meta.elapsedMs;
    this.emit({ type: 'log', message: `resumed from ${resume.path} at step ${this.step}` });
  }

  private emitReady(): void {
    this.emit({
      type: 'ready',
      model: { ...this.trainer.info },
      totalSteps: this.plan.totalSteps,
      startStep: this.step,
      trainWindows: this.data.nWindows,
      evalWindows: this.evalData?.nWindows ?? 0,
      trainTokensPerEpoch: this.plan.trainTokensPerEpoch,
      modelFingerprint: this.plan.fingerprint,
      placement: this.trainer.placement(),
    });
  }

  /** One optimizer step over the next windowsPerStep windows of the data order. */
  private async trainStep(): Promise<void> {
    const { job, data, plan, trainer } = this;
    const { ids, next } = takeWindows(data.nWindows, job.seed, this.cursor, job.windowsPerStep);
    const windows: TokenWindow[] = ids.map((i) => data.read(i));
    const lr = lrAt(plan.schedule, this.step);
    const ts = Date.now();
    const { beta1, beta2, eps, weightDecay, clipNorm } = job.optimizer;
    const r = await trainer.step(windows, { lr, beta1, beta2, eps, weightDecay, clipNorm });
    const stepMs = Date.now() - ts;
    this.step++;
    this.cursor = next;
    this.trainedTokens += r.nTrained;
    // On a GPU: the trainer's own device buffers (weights + LoRA/optimizer + compute), what the
    // card's budget pays. On the CPU the budget is system RAM, which the whole process uses
    // (host copies, graph metadata, the runtime): its peak resident memory, what the estimate
    // (core/runs/estimate.ts) predicts and test/integration/runs-memory.test.ts checks.
    const own = trainer
      .memory()
      .filter((e) => e.device !== 'CPU')
      .reduce((t, e) => t + e.weights + e.lora + e.compute + e.checkpoint, 0);
    this.emit({
      type: 'step',
      metric: {
        step: this.step,
        epoch: this.cursor.epoch + this.cursor.index / data.nWindows,
        loss: r.loss,
        lr,
        tokensPerSecond: (windows.length * plan.seqLen) / Math.max(1e-3, stepMs / 1000),
        tokens: this.trainedTokens,
        memoryBytes: own > 0 ? own : peakRss(),
        // JSON has no NaN or Infinity: a norm that is not finite is stored as unknown.
        gradNorm: Number.isFinite(r.gradNorm) ? r.gradNorm : null,
        time: Date.now(),
      },
      totalSteps: plan.totalSteps,
      stepMs,
    });
  }

  /** Mean loss per trained token over the first evalMaxWindows held-out windows. */
  private async evaluate(): Promise<void> {
    const evalData = this.evalData;
    if (!evalData || evalData.nWindows === 0) return;
    const n = Math.min(evalData.nWindows, this.job.evalMaxWindows ?? evalData.nWindows);
    let sum = 0;
    let tok = 0;
    for (let i = 0; i < n; i++) {
      const r = await this.trainer.evaluate([evalData.read(i)]);
      sum += r.lossSum;
      tok += r.nTrained;
    }
    if (tok > 0)
      this.emit({ type: 'eval', eval: { step: this.step, valLoss: sum / tok, time: Date.now() } });
  }

  /** Samples each probe prompt with the adapter as it stands (saved to a temporary file). */
  private async probe(): Promise<void> {
    const p = this.job.probes;
    if (!p || p.prompts.length === 0) return;
    const trainer = this.trainer;
    const probeTmp = this.job.adapterPath + '.probe.gguf';
    await trainer.saveAdapter(probeTmp, this.adapterMeta());
    try {
      for (let i = 0; i < p.prompts.length; i++) {
        const pr = p.prompts[i]!;
        const tokens =
          'tokens' in pr ? Int32Array.from(pr.tokens) : trainer.tokenize(pr.text, true);
        const r = await trainer.probe(
          {
            prompt: tokens,
            maxTokens: p.maxTokens,
            temperature: p.temperature,
            seed: Math.floor(this.rng.next() * 2 ** 31), // a non-negative int32
          },
          probeTmp,
        );
        const label = pr.label ?? ('text' in pr ? pr.text : trainer.detokenize(tokens));
        this.emit({
          type: 'probe',
          probe: { step: this.step, index: i, prompt: label, output: r.text },
        });
      }
    } finally {
      if (existsSync(probeTmp)) unlinkSync(probeTmp);
    }
  }

  /** Writes the checkpoint (when the job has a checkpoint dir); it records the plan's match. */
  private checkpoint(kind: CheckpointKind): void {
    const dir = this.job.checkpoint?.dir;
    if (!dir) return;
    const { state, adamT } = this.trainer.getState();
    const path = join(dir, CHECKPOINT_FILE);
    writeCheckpoint(
      path,
      {
        step: this.step,
        adamT,
        cursor: this.cursor,
        rngState: this.rng.state(),
        trainedTokens: this.trainedTokens,
        elapsedMs: this.elapsedBefore + (Date.now() - this.startedAt),
        match: this.plan.match,
      },
      state,
    );
    this.emit({ type: 'checkpoint', step: this.step, path, kind });
  }

  /** The adapter GGUF's metadata: the base model and the config that made it. */
  private adapterMeta(): Record<string, string> {
    const { job, plan } = this;
    return {
      'overnight.base.fingerprint': plan.fingerprint,
      'overnight.base.name': this.trainer.info.desc,
      'overnight.training.config': JSON.stringify({
        lora: job.lora,
        optimizer: job.optimizer,
        schedule: job.schedule,
        windowsPerStep: job.windowsPerStep,
        seqLen: plan.seqLen,
        seed: job.seed,
        totalSteps: plan.totalSteps,
      }),
      'overnight.training.step': String(this.step),
      ...job.metadata,
    };
  }

  private async finish(): Promise<void> {
    const job = this.job;
    await this.trainer.saveAdapter(job.adapterPath, this.adapterMeta());
    this.checkpoint('final');
    this.emit({ type: 'done', status: 'completed', step: this.step, adapterPath: job.adapterPath });
  }
}
