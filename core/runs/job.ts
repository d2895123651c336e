/**
 * The training job of a run (contract/training.ts), built in one place from the run's effective
 * config (lifecycle.effectiveConfig) and the files its launch prepared: the supervisor trains
 * with it, an export and a calibration are the same job with fewer steps and another output.
 * Also the run folder's record of those files (`input.json`), which a later export reads.
 * Holds no state and touches no process.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { trainerGpuLayers, type RunConfig } from '../../contract/index.ts';
import type { TrainingJob } from '../../contract/training.ts';
import { physicalCores } from '../system/cpu.ts';
import { isGpuDevice, lossChunkRows, resolveCheckpointing, type ModelDims } from './estimate.ts';

/** What jobFor needs of a run (a calibration passes its own scratch folder and step count). */
export interface JobRun {
  id: string;
  name: string;
  folder: string;
  /** Steps the run takes; 0 = from the config (maxSteps, else epochs). */
  totalSteps: number;
  /** The effective config (out-of-memory fallbacks applied). */
  config: RunConfig;
}

/** The files a launch prepared (core/runs/datasets-port.ts) and the model's file. */
export interface JobInputs {
  modelPath: string;
  trainFile: string;
  validationFile: string | null;
  /** Probe prompts as token ids (the datasets domain templates them), or as text. */
  probePrompts?: NonNullable<TrainingJob['probes']>['prompts'];
  /** The trainer backend chosen for this machine (core/runs/device.ts); absent: the CPU. */
  backend?: string | undefined;
  /**
   * The model's dimensions (model-dims.ts) and the free memory of the device the job trains on
   * (core/runs/device.ts; system RAM for the CPU): checkpointing 'auto' and the loss chunk are
   * resolved from them.
   */
  memory: JobMemory;
}

export interface JobMemory {
  dims: ModelDims;
  freeBytes: number;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The job that trains `run`, from its first step or from the checkpoint at `resumeFrom`. */
export function jobFor(run: JobRun, resumeFrom: string | null, inputs: JobInputs): TrainingJob {
  const cfg = run.config;
  // The trainer checkpoints on a timer; to be able to keep the checkpoint of the best eval,
  // that timer also fires at every eval (extra ones are dropped unless best).
  const keepBest = cfg.validationShare > 0 && (cfg.earlyStopping || cfg.finalAdapter === 'best');
  const prompts = inputs.probePrompts ?? [];
  return {
    modelPath: inputs.modelPath,
    dataPath: inputs.trainFile,
    evalDataPath: inputs.validationFile,
    adapterPath: join(run.folder, 'adapter-last.gguf'),
    lora: {
      rank: cfg.loraRank,
      alpha: cfg.loraAlpha,
      targets: [...cfg.loraTargets],
      seed: cfg.seed,
    },
    optimizer: {
      lr: cfg.learningRate,
      beta1: cfg.adamBeta1,
      beta2: cfg.adamBeta2,
      weightDecay: cfg.weightDecay,
      clipNorm: cfg.gradClipNorm,
    },
    schedule: { type: cfg.lrSchedule, warmupSteps: cfg.warmupSteps, minLr: cfg.minLearningRate },
    windowsPerStep: cfg.effectiveBatch,
    microBatch: cfg.microBatch,
    checkpointing: resolveCheckpointing(
      cfg.checkpointing,
      cfg,
      inputs.memory.dims,
      inputs.memory.freeBytes,
      isGpuDevice({ backend: inputs.backend }),
    ),
    // The head's chunk no larger than the per-layer backward graph (estimate.ts lossChunkRows).
    lossChunk: lossChunkRows(inputs.memory.dims, cfg.sequenceLength, cfg.microBatch),
    maxSteps: run.totalSteps > 0 ? run.totalSteps : cfg.maxSteps,
    epochs: cfg.epochs,
    evalInterval: cfg.validationShare > 0 ? cfg.evalInterval : 0,
    checkpoint: {
      dir: join(run.folder, 'trainer'),
      interval: keepBest ? gcd(cfg.evalInterval, cfg.checkpointInterval) : cfg.checkpointInterval,
      resumeFrom,
    },
    probes: prompts.length ? { prompts } : undefined,
    seed: cfg.seed,
    // 0 (auto) = one thread per physical core (core/system/cpu.ts), resolved here so the job
    // says what it runs with.
    threads: cfg.threads > 0 ? cfg.threads : physicalCores(),
    backend:
      inputs.backend === 'cuda' || inputs.backend === 'vulkan' || inputs.backend === 'metal'
        ? inputs.backend
        : 'cpu',
    gpuLayers: trainerGpuLayers(cfg),
    metadata: { 'overnight.run.id': run.id, 'overnight.run.name': run.name },
  };
}

/**
 * The job that writes an adapter from a checkpoint with the real trainer: it resumes from the
 * checkpoint with maxSteps equal to its step, so it loads the state, takes no step and saves.
 */
export function exportJob(
  run: JobRun,
  ckpt: { step: number; path: string },
  inputs: Pick<JobInputs, 'modelPath' | 'trainFile' | 'memory'>,
  out: { adapterPath: string; scratchDir: string },
): TrainingJob {
  const job = jobFor(run, ckpt.path, { ...inputs, validationFile: null });
  return {
    ...job,
    adapterPath: out.adapterPath,
    maxSteps: ckpt.step,
    evalInterval: 0,
    checkpoint: { dir: out.scratchDir, resumeFrom: ckpt.path },
    probes: undefined,
    metadata: { 'overnight.run.id': run.id, 'overnight.checkpoint.step': String(ckpt.step) },
  };
}

/** A few real steps at the constant learning rate in a scratch folder: the pace of a config. */
export function calibrationJob(
  cfg: RunConfig,
  inputs: Pick<JobInputs, 'modelPath' | 'trainFile' | 'memory' | 'backend'>,
  steps: number,
  scratchDir: string,
): TrainingJob {
  const run = { id: 'calibration', name: 'calibration', folder: scratchDir, totalSteps: steps };
  const job = jobFor({ ...run, config: cfg }, null, { ...inputs, validationFile: null });
  return {
    ...job,
    adapterPath: join(scratchDir, 'adapter.gguf'),
    schedule: { type: 'constant' },
    evalInterval: 0,
    checkpoint: undefined,
    probes: undefined,
    metadata: {},
  };
}

/** Where a launch records the trainer input files of the run folder (an export needs them). */
export const INPUT_FILE = 'input.json';

export interface RunInputFiles {
  trainFile: string;
  validationFile: string | null;
}

export function writeRunInputs(folder: string, files: RunInputFiles): void {
  writeFileSync(join(folder, INPUT_FILE), JSON.stringify(files));
}

/** The input files a launch recorded in `folder`, or null when none did (or it is unreadable). */
export function readRunInputs(folder: string): RunInputFiles | null {
  const file = join(folder, INPUT_FILE);
  if (!existsSync(file)) return null;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<RunInputFiles>;
    if (typeof v.trainFile !== 'string') return null;
    return { trainFile: v.trainFile, validationFile: v.validationFile ?? null };
  } catch {
    return null;
  }
}
