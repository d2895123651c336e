// The contract between the run supervisor and the training process: the job spec it is fed and
// the events it streams back (over child_process IPC, see trainer-process.ts / worker.ts).
import type { LoraTargetName, ModelInfo } from '../../native/ts/binding.ts';
import type { LrScheduleType } from './schedule.ts';

export interface TrainingJob {
  /** Base model GGUF. */
  modelPath: string;
  /** Token data file (native/ts/token-data.ts) with the training windows. */
  dataPath: string;
  /** Token data file with held-out windows for validation loss; null = no validation. */
  evalDataPath?: string | null;
  /** Evaluate at most this many held-out windows per pass (default all). */
  evalMaxWindows?: number;
  /** Where the final adapter GGUF is written. */
  adapterPath: string;
  lora: { rank: number; alpha: number; targets: LoraTargetName[]; seed?: number };
  /**
   * AdamW and gradient clipping. Omitted fields take the run config's defaults
   * (contract/runs.ts optimizerDefaults); run.ts passes every value to the trainer explicitly.
   */
  optimizer: {
    lr: number;
    beta1?: number;
    beta2?: number;
    eps?: number;
    weightDecay?: number;
    /** Clip the global L2 norm of the gradients to this before the update; 0 = no clipping. */
    clipNorm?: number;
  };
  schedule: { type: LrScheduleType; warmupSteps?: number; minLr?: number };
  /** Windows per optimizer step (effective batch); each window is one micro-batch of the graph. */
  windowsPerStep: number;
  /** Stop after this many optimizer steps; otherwise after `epochs` passes over the data. */
  maxSteps?: number | null;
  epochs?: number;
  /** Optimizer steps between validation passes (0/undefined = only at the end). */
  evalInterval?: number;
  checkpoint?: {
    dir: string;
    /** Optimizer steps between checkpoints (0/undefined = none on a timer). */
    interval?: number;
    /** Checkpoint file or directory to resume from. */
    resumeFrom?: string | null;
  };
  probes?: {
    /** Prompts as token ids (already templated), or as text tokenized with the model's vocab. */
    prompts: ({ tokens: number[]; label?: string } | { text: string; label?: string })[];
    maxTokens?: number;
    /** 0 = greedy. */
    temperature?: number;
    /** Optimizer steps between probes (default: with every validation pass). */
    interval?: number;
  };
  /** Seed of the data order and probe sampling. */
  seed?: number;
  threads?: number;
  gpuLayers?: number;
  /** Extra adapter metadata (string values), e.g. run id. */
  metadata?: Record<string, string>;
}

export type TrainingCommand =
  | { type: 'start'; job: TrainingJob }
  | { type: 'cancel' }
  | { type: 'checkpoint' }
  | { type: 'pause' };

export type TrainingErrorCode =
  | 'E_OOM'
  | 'E_ARCH'
  | 'E_TYPE'
  | 'E_CONFIG'
  | 'E_MODEL'
  | 'E_DATA'
  | 'E_INPUT'
  | 'E_NO_TOKENS'
  | 'E_CHECKPOINT'
  | 'E_DIVERGED'
  | 'E_NO_ADDON'
  | 'E_CRASH'
  | 'E_NATIVE'
  | string;

export type TrainingEvent =
  | {
      type: 'ready';
      model: ModelInfo;
      totalSteps: number;
      startStep: number;
      trainWindows: number;
      evalWindows: number;
      trainTokensPerEpoch: number;
      modelFingerprint: string;
    }
  | {
      type: 'step';
      step: number;
      totalSteps: number;
      /** Fractional epochs completed. */
      epoch: number;
      loss: number;
      lr: number;
      tokensPerSecond: number;
      /** Cumulative trained (labelled) tokens. */
      trainedTokens: number;
      stepTokens: number;
      stepMs: number;
      /** Global L2 norm of the LoRA gradients before clipping. */
      gradNorm: number;
      elapsedMs: number;
      peakRssBytes: number;
      deviceMemoryBytes: number | null;
    }
  | { type: 'eval'; step: number; valLoss: number; tokens: number; ms: number }
  | { type: 'probe'; step: number; index: number; prompt: string; output: string }
  | {
      type: 'checkpoint';
      step: number;
      path: string;
      kind: 'interval' | 'manual' | 'pause' | 'final';
    }
  | {
      type: 'done';
      status: 'completed' | 'cancelled' | 'paused';
      step: number;
      adapterPath: string | null;
    }
  | { type: 'error'; code: TrainingErrorCode; message: string }
  | { type: 'log'; message: string };
