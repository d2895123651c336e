/**
 * The pipe between the engine and its training process (core/training/trainer-process.ts forks
 * core/training/worker.ts; child_process IPC, JSON): the job the engine sends, the commands that
 * steer it, and the events the trainer streams back. Both ends parse what they receive with these
 * schemas, like every other boundary; a message that does not parse is refused with a message
 * naming the field, never half-used.
 *
 * A step, an evaluation and a probe answer travel as the contract's own `RunMetric`, `RunEval`
 * and `RunProbe` (contract/runs.ts): the worker builds them, the supervisor stores and forwards
 * them unchanged, the renderer charts them. Job fields left out take the run config's defaults
 * (`runConfigDefaults`), so the training process passes every value to the trainer explicitly.
 * Not in the index: only the engine and the training process speak this.
 */
import { z } from 'zod';
import { formatZodError } from './errors.ts';
import {
  loraTargets,
  lrSchedules,
  optimizerDefaults,
  runConfigDefaults,
  runEvalSchema,
  runMetricSchema,
  runPlacementSchema,
  runProbeSchema,
} from './runs.ts';

/**
 * Codes a training process ends with. The native trainer's own (native/src), the worker's
 * (E_DATA, E_NO_TOKENS, E_NO_ADDON), the supervisor's view of a death (E_CRASH, E_OOM) and
 * E_PROTOCOL (a message on the pipe that does not parse). Any other code reaching the worker
 * becomes E_NATIVE with the original code in the message.
 */
export const trainerErrorCodes = [
  'E_OOM',
  'E_ARCH',
  'E_TYPE',
  'E_CONFIG',
  'E_MODEL',
  'E_DATA',
  'E_INPUT',
  'E_NO_TOKENS',
  'E_CHECKPOINT',
  'E_DIVERGED',
  'E_NO_ADDON',
  'E_BACKEND',
  'E_COMPUTE',
  'E_PROBE',
  'E_INTERNAL',
  'E_CANCELLED',
  'E_PROTOCOL',
  'E_CRASH',
  'E_NATIVE',
] as const;
export type TrainerErrorCode = (typeof trainerErrorCodes)[number];

export function isTrainerErrorCode(code: string): code is TrainerErrorCode {
  return (trainerErrorCodes as readonly string[]).includes(code);
}

/**
 * Failures a retry from the last checkpoint cannot fix (the config, the model, the data, the
 * install, a diverged run, a broken pipe): the run fails for good. Every other code (a crash,
 * E_OOM with its fallback) goes through lifecycle.decideAfterCrash.
 */
export const fatalTrainerErrors: ReadonlySet<TrainerErrorCode> = new Set([
  'E_CONFIG',
  'E_MODEL',
  'E_DATA',
  'E_NO_TOKENS',
  'E_ARCH',
  'E_TYPE',
  'E_NO_ADDON',
  'E_CHECKPOINT',
  'E_DIVERGED',
  'E_PROTOCOL',
]);

/** Probe answers are sampled up to this many tokens (greedy unless a temperature is given). */
export const probeMaxTokens = 48;

const positiveInt = z.number().int().min(1);
const unit = z.number().min(0).lt(1);

export const trainingJobSchema = z
  .object({
    /** Base model GGUF. */
    modelPath: z.string().min(1),
    /** Token data file (native/ts/token-data.ts) with the training windows. */
    dataPath: z.string().min(1),
    /** Token data file with held-out windows for validation loss; null = no validation. */
    evalDataPath: z.string().min(1).nullable().default(null),
    /** Evaluate at most this many held-out windows per pass (default all). */
    evalMaxWindows: positiveInt.optional(),
    /** Where the final adapter GGUF is written. */
    adapterPath: z.string().min(1),
    lora: z.object({
      rank: positiveInt.default(runConfigDefaults.loraRank),
      alpha: z.number().positive().default(runConfigDefaults.loraAlpha),
      targets: z.array(z.enum(loraTargets)).min(1).default(runConfigDefaults.loraTargets),
      /** Seed of the LoRA initialisation (default: the job's seed). */
      seed: z.number().int().min(0).optional(),
    }),
    /** AdamW and gradient clipping (clipNorm 0 = no clipping). */
    optimizer: z.object({
      lr: z.number().gt(0),
      beta1: unit.default(optimizerDefaults.adamBeta1),
      beta2: unit.default(optimizerDefaults.adamBeta2),
      eps: z.number().gt(0).default(optimizerDefaults.adamEps),
      weightDecay: z.number().min(0).default(optimizerDefaults.weightDecay),
      clipNorm: z.number().min(0).default(optimizerDefaults.gradClipNorm),
    }),
    schedule: z.object({
      type: z.enum(lrSchedules),
      warmupSteps: z.number().int().min(0).default(0),
      minLr: z.number().min(0).default(0),
    }),
    /** Windows per optimizer step (effective batch): windowsPerStep / microBatch micro-batches. */
    windowsPerStep: positiveInt,
    /** Windows per graph (one micro-batch); windowsPerStep is a multiple of it. */
    microBatch: positiveInt.default(runConfigDefaults.microBatch),
    /**
     * Activation checkpointing, resolved by the engine (core/runs/job.ts: the config's 'auto'
     * is on when the memory estimate without it does not fit the device).
     */
    checkpointing: z.boolean().default(false),
    /** Output rows per chunk of the loss (output projection + softmax cross-entropy) when checkpointing; 0 = one chunk (docs/native.md). */
    lossChunk: z.number().int().min(0).default(0),
    /** Stop after this many optimizer steps; otherwise after `epochs` passes over the data. */
    maxSteps: positiveInt.nullable().default(null),
    epochs: z.number().gt(0).optional(),
    /** Optimizer steps between validation passes (0 = only at the end). */
    evalInterval: z.number().int().min(0).default(0),
    checkpoint: z
      .object({
        dir: z.string().min(1),
        /** Optimizer steps between checkpoints (0 = none on a timer). */
        interval: z.number().int().min(0).default(0),
        /** Checkpoint file or directory to resume from. */
        resumeFrom: z.string().min(1).nullable().default(null),
      })
      .optional(),
    probes: z
      .object({
        /** Prompts as token ids (already templated), or as text tokenized with the model's vocab. */
        prompts: z.array(
          z.union([
            z.object({ tokens: z.array(z.number().int()), label: z.string().optional() }),
            z.object({ text: z.string(), label: z.string().optional() }),
          ]),
        ),
        maxTokens: positiveInt.default(probeMaxTokens),
        /** 0 = greedy. */
        temperature: z.number().min(0).default(0),
        /** Optimizer steps between probes (default: with every validation pass). */
        interval: z.number().int().min(0).optional(),
      })
      .optional(),
    /** Seed of the data order and probe sampling. */
    seed: z.number().int().min(0).default(runConfigDefaults.seed),
    /** CPU threads; 0 = the trainer picks. */
    threads: z.number().int().min(0).default(runConfigDefaults.threads),
    /** The trainer's ggml backend (the addon it loads), chosen by the engine (core/runs/device.ts). */
    backend: z.enum(['cpu', 'cuda', 'vulkan', 'metal']).default('cpu'),
    /** Layers on the GPU as the trainer takes them (contract/runs.ts trainerGpuLayers). */
    gpuLayers: z.number().int().min(0).default(0),
    /** Extra adapter metadata (string values), e.g. run id. */
    metadata: z.record(z.string(), z.string()).default({}),
  })
  .refine((j) => j.maxSteps !== null || j.epochs !== undefined, {
    path: ['epochs'],
    message: 'give maxSteps or epochs > 0',
  })
  .refine((j) => j.windowsPerStep % j.microBatch === 0, {
    path: ['windowsPerStep'],
    message: 'windowsPerStep must be a multiple of microBatch (whole micro-batches per step)',
  });
/** A job as the engine writes it (defaults may be left out). */
export type TrainingJob = z.input<typeof trainingJobSchema>;
/** A job as the training process runs it: every value present. */
export type ParsedTrainingJob = z.output<typeof trainingJobSchema>;

export const trainingCommandSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('start'), job: z.unknown() }),
  z.object({ type: z.literal('cancel') }),
  z.object({ type: z.literal('checkpoint') }),
  z.object({ type: z.literal('pause') }),
]);
/** Engine -> training process. `start`'s job is parsed on its own (a bad job is E_CONFIG). */
export type TrainingCommand =
  | { type: 'start'; job: TrainingJob }
  | Exclude<z.output<typeof trainingCommandSchema>, { type: 'start' }>;

/** What the trainer reports about the model it opened (native/ts/binding.ts ModelInfo). */
const trainerModelSchema = z.looseObject({
  arch: z.string(),
  desc: z.string(),
  nLayer: z.number().int(),
  nLoraParams: z.number().int(),
  backend: z.string(),
});

export const checkpointEventKinds = ['interval', 'manual', 'pause', 'final'] as const;

export const trainingEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('ready'),
    model: trainerModelSchema,
    totalSteps: z.number().int().min(0),
    startStep: z.number().int().min(0),
    trainWindows: z.number().int().min(0),
    evalWindows: z.number().int().min(0),
    trainTokensPerEpoch: z.number().min(0),
    modelFingerprint: z.string(),
    /** The trainer's placement report (optional: older workers did not send it). */
    placement: runPlacementSchema.optional(),
  }),
  z.object({
    type: z.literal('step'),
    metric: runMetricSchema,
    totalSteps: z.number().int().min(0),
    /** Wall time of the optimizer step (the calibration's pace). */
    stepMs: z.number().min(0),
  }),
  z.object({ type: z.literal('eval'), eval: runEvalSchema }),
  z.object({ type: z.literal('probe'), probe: runProbeSchema }),
  z.object({
    type: z.literal('checkpoint'),
    step: z.number().int().min(0),
    path: z.string(),
    kind: z.enum(checkpointEventKinds),
  }),
  z.object({
    type: z.literal('done'),
    status: z.enum(['completed', 'cancelled', 'paused']),
    step: z.number().int().min(0),
    adapterPath: z.string().nullable(),
  }),
  z.object({ type: z.literal('error'), code: z.enum(trainerErrorCodes), message: z.string() }),
  z.object({ type: z.literal('log'), message: z.string() }),
]);
export type TrainingEvent = z.output<typeof trainingEventSchema>;

/** A message on the pipe that is not what its schema says; the message names each field. */
export class PipeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PipeError';
  }
}

function parseWith<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const r = schema.safeParse(raw);
  if (!r.success) throw new PipeError(`${what}: ${formatZodError(r.error, 'message')}`);
  return r.data;
}

/** The training process's event as the engine receives it; throws PipeError naming the field. */
export function parseTrainingEvent(raw: unknown): TrainingEvent {
  return parseWith(trainingEventSchema, raw, 'malformed message from the training process');
}

/** The engine's command as the training process receives it; throws PipeError. */
export function parseTrainingCommand(raw: unknown): z.output<typeof trainingCommandSchema> {
  return parseWith(trainingCommandSchema, raw, 'malformed command from the engine');
}

/** The job of a start command, every default filled in; throws PipeError naming the field. */
export function parseTrainingJob(raw: unknown): ParsedTrainingJob {
  return parseWith(trainingJobSchema, raw, 'the training job is not valid');
}
