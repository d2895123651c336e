// One training run inside the training process: data order, schedule, steps, validation, probes,
// checkpoints, resume and the final adapter. worker.ts wraps it with IPC; tests can drive it
// in-process too. All numerics live in the native trainer (native/ts/binding.ts).
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
import { parseTrainingJob, PipeError } from '../../contract/training.ts';
import type {
  ParsedTrainingJob,
  TrainerErrorCode,
  TrainingEvent,
  TrainingJob,
} from '../../contract/training.ts';
import { NativeError, Trainer, peakRss } from '../../native/ts/binding.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { CHECKPOINT_FILE, readCheckpoint, writeCheckpoint } from './checkpoint.ts';
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
    const n = Math.min(size, 8 << 20);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 0);
    return 'sha256-8m:' + createHash('sha256').update(String(size)).update(buf).digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** The job with every default filled in (contract/training.ts), or E_CONFIG / E_MODEL. */
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

export interface RunControl {
  cancel: boolean;
  pause: boolean;
  checkpointNow: boolean;
}

export class TrainingRun {
  readonly control: RunControl = { cancel: false, pause: false, checkpointNow: false };
  private trainer: Trainer | null = null;
  private job!: ParsedTrainingJob;

  constructor(
    private readonly input: TrainingJob,
    private readonly emit: (e: TrainingEvent) => void,
  ) {}

  /** Cancels within one micro-batch: the in-flight native step rejects with E_CANCELLED. */
  cancel(): void {
    this.control.cancel = true;
    this.trainer?.cancel(true);
  }
  pause(): void {
    this.control.pause = true;
  }
  checkpointNow(): void {
    this.control.checkpointNow = true;
  }

  async run(): Promise<void> {
    const job = (this.job = validateJob(this.input));
    const data = new TokenDataReader(job.dataPath);
    const evalData = job.evalDataPath ? new TokenDataReader(job.evalDataPath) : null;
    try {
      await this.runWith(data, evalData);
    } finally {
      data.close();
      evalData?.close();
      this.trainer?.close();
      this.trainer = null;
    }
  }

  private async runWith(data: TokenDataReader, evalData: TokenDataReader | null): Promise<void> {
    const job = this.job;
    const seqLen = data.seqLen;
    if (evalData && evalData.seqLen !== seqLen) {
      throw new TrainingError(
        'E_DATA',
        `evaluation data has seqLen ${evalData.seqLen}, training data ${seqLen}`,
      );
    }
    if (data.nWindows === 0)
      throw new TrainingError('E_NO_TOKENS', `${job.dataPath} has no windows`);
    let tokensPerEpoch = 0;
    for (let i = 0; i < data.nWindows; i++) tokensPerEpoch += data.trainedTokens(i);
    if (tokensPerEpoch === 0) {
      throw new TrainingError(
        'E_NO_TOKENS',
        `${job.dataPath}: no trained tokens (every label is -1; check the assistant-only mask)`,
      );
    }
    const seed = job.seed;
    const totalSteps =
      job.maxSteps ??
      Math.max(1, Math.ceil(((job.epochs ?? 1) * data.nWindows) / job.windowsPerStep));
    const fingerprint = modelFingerprint(job.modelPath);

    // resume: read and check the checkpoint before loading the model
    // What a checkpoint must share with this job to resume it (and what ours record).
    const match = {
      modelFingerprint: fingerprint,
      rank: job.lora.rank,
      alpha: job.lora.alpha,
      targets: job.lora.targets,
      seqLen,
      windowsPerStep: job.windowsPerStep,
      seed,
    };
    let resume: ReturnType<typeof readCheckpoint> | null = null;
    if (job.checkpoint?.resumeFrom) {
      resume = readCheckpoint(job.checkpoint.resumeFrom);
      const m = resume.meta.match;
      const want = match;
      for (const k of Object.keys(want) as (keyof typeof want)[]) {
        if (JSON.stringify(m[k]) !== JSON.stringify(want[k])) {
          throw new TrainingError(
            'E_CHECKPOINT',
            `checkpoint ${resume.path} was made with ${k} = ${JSON.stringify(m[k])}, this job has ${JSON.stringify(want[k])}`,
          );
        }
      }
    }

    const trainer = await Trainer.open({
      modelPath: job.modelPath,
      targets: job.lora.targets,
      rank: job.lora.rank,
      alpha: job.lora.alpha,
      seed: job.lora.seed ?? seed,
      seqLen,
      threads: job.threads,
      gpuLayers: job.gpuLayers,
      backend: job.backend,
      backwardRoute: 'auto',
    });
    this.trainer = trainer;
    if (this.control.cancel) trainer.cancel(true);

    let step = 0;
    let cursor: DataCursor = { epoch: 0, index: 0 };
    let rng = mulberry32(seed);
    let trainedTokens = 0;
    let elapsedBefore = 0;
    if (resume) {
      trainer.setState(resume.state, resume.meta.adamT);
      step = resume.meta.step;
      cursor = resume.meta.cursor;
      rng = mulberry32(resume.meta.rngState);
      trainedTokens = resume.meta.trainedTokens;
      elapsedBefore = resume.meta.elapsedMs;
      this.emit({ type: 'log', message: `resumed from ${resume.path} at step ${step}` });
    }

    this.emit({
      type: 'ready',
      model: { ...trainer.info },
      totalSteps,
      startStep: step,
      trainWindows: data.nWindows,
      evalWindows: evalData?.nWindows ?? 0,
      trainTokensPerEpoch: tokensPerEpoch,
      modelFingerprint: fingerprint,
    });

    const sched: LrSchedule = {
      type: job.schedule.type,
      lr: job.optimizer.lr,
      warmupSteps: job.schedule.warmupSteps,
      minLr: job.schedule.minLr,
      totalSteps,
    };
    const ckptDir = job.checkpoint?.dir;
    if (ckptDir) mkdirSync(ckptDir, { recursive: true });
    mkdirSync(dirname(job.adapterPath), { recursive: true });
    const t0 = Date.now();
    const elapsed = () => elapsedBefore + (Date.now() - t0);

    const adapterMeta = (): Record<string, string> => ({
      'overnight.base.fingerprint': fingerprint,
      'overnight.base.name': trainer.info.desc,
      'overnight.training.config': JSON.stringify({
        lora: job.lora,
        optimizer: job.optimizer,
        schedule: job.schedule,
        windowsPerStep: job.windowsPerStep,
        seqLen,
        seed,
        totalSteps,
      }),
      'overnight.training.step': String(step),
      ...job.metadata,
    });

    const checkpoint = (kind: 'interval' | 'manual' | 'pause' | 'final') => {
      if (!ckptDir) return;
      const { state, adamT } = trainer.getState();
      const path = join(ckptDir, CHECKPOINT_FILE);
      writeCheckpoint(
        path,
        {
          step,
          adamT,
          cursor,
          rngState: rng.state(),
          trainedTokens,
          elapsedMs: elapsed(),
          match,
        },
        state,
      );
      this.emit({ type: 'checkpoint', step, path, kind });
    };

    const evaluate = async () => {
      if (!evalData || evalData.nWindows === 0) return;
      const n = Math.min(evalData.nWindows, job.evalMaxWindows ?? evalData.nWindows);
      let sum = 0;
      let tok = 0;
      for (let i = 0; i < n; i++) {
        const r = await trainer.evaluate([evalData.read(i)]);
        sum += r.lossSum;
        tok += r.nTrained;
      }
      if (tok > 0)
        this.emit({ type: 'eval', eval: { step, valLoss: sum / tok, time: Date.now() } });
    };

    const probeTmp = job.adapterPath + '.probe.gguf';
    const probe = async () => {
      const p = job.probes;
      if (!p || p.prompts.length === 0) return;
      await trainer.saveAdapter(probeTmp, adapterMeta());
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
              seed: Math.floor(rng.next() * 2 ** 31),
            },
            probeTmp,
          );
          const label = pr.label ?? ('text' in pr ? pr.text : trainer.detokenize(tokens));
          this.emit({ type: 'probe', probe: { step, index: i, prompt: label, output: r.text } });
        }
      } finally {
        if (existsSync(probeTmp)) unlinkSync(probeTmp);
      }
    };

    const evalEvery = job.evalInterval;
    const probeEvery = job.probes?.interval ?? evalEvery;
    const ckptEvery = job.checkpoint?.interval ?? 0;

    try {
      while (step < totalSteps) {
        if (this.control.cancel) throw new NativeError('E_CANCELLED', 'cancelled');
        const { ids, next } = takeWindows(data.nWindows, seed, cursor, job.windowsPerStep);
        const windows: TokenWindow[] = ids.map((i) => data.read(i));
        const lr = lrAt(sched, step);
        const ts = Date.now();
        const { beta1, beta2, eps, weightDecay, clipNorm } = job.optimizer;
        const r = await trainer.step(windows, { lr, beta1, beta2, eps, weightDecay, clipNorm });
        const stepMs = Date.now() - ts;
        step++;
        cursor = next;
        trainedTokens += r.nTrained;
        // The trainer's own buffers (weights + LoRA/optimizer + compute, every device) when it
        // reports them, else the process's peak resident memory.
        const own = trainer.memory().reduce((t, e) => t + e.weights + e.lora + e.compute, 0);
        this.emit({
          type: 'step',
          metric: {
            step,
            epoch: cursor.epoch + cursor.index / data.nWindows,
            loss: r.loss,
            lr,
            tokensPerSecond: (windows.length * seqLen) / Math.max(1e-3, stepMs / 1000),
            tokens: trainedTokens,
            memoryBytes: own > 0 ? own : peakRss(),
            // JSON has no NaN or Infinity: a norm that is not finite is stored as unknown.
            gradNorm: Number.isFinite(r.gradNorm) ? r.gradNorm : null,
            time: Date.now(),
          },
          totalSteps,
          stepMs,
        });
        const last = step === totalSteps;
        if ((evalEvery > 0 && step % evalEvery === 0) || last) await evaluate();
        if ((probeEvery > 0 && step % probeEvery === 0) || last) await probe();
        if (ckptEvery > 0 && step % ckptEvery === 0) checkpoint('interval');
        else if (this.control.checkpointNow) checkpoint('manual');
        this.control.checkpointNow = false;
        if (this.control.pause && !last) {
          checkpoint('pause');
          this.emit({ type: 'done', status: 'paused', step, adapterPath: null });
          return;
        }
      }
    } catch (e) {
      if (e instanceof NativeError && e.code === 'E_CANCELLED') {
        this.emit({ type: 'done', status: 'cancelled', step, adapterPath: null });
        return;
      }
      throw e;
    }
    await trainer.saveAdapter(job.adapterPath, adapterMeta());
    if (ckptDir) checkpoint('final');
    this.emit({ type: 'done', status: 'completed', step, adapterPath: job.adapterPath });
  }
}
