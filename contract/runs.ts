/**
 * Training runs: a config (what to train, how), its life (queued -> running -> completed ...),
 * and what it produces (step metrics, evals, probe samples, checkpoints, the final adapter).
 *
 * The config schema is the one place where every field's default, range and message live:
 * the New-run page, `overnight train --config run.json` and `runs.create` all parse through it.
 * Checks that need the model or the dataset (sequence length vs the model's context, an empty
 * dataset, a moved model file) happen in the engine before anything starts (core/runs/validate.ts).
 */
import { z } from 'zod';
import { event, method } from './define.ts';

export const runIdSchema = z.string().min(1);

/** Linear layers of a transformer block that can carry a LoRA pair (GGUF tensor base names). */
export const loraTargets = [
  'attn_q',
  'attn_k',
  'attn_v',
  'attn_output',
  'ffn_gate',
  'ffn_up',
  'ffn_down',
] as const;
export type LoraTarget = (typeof loraTargets)[number];

export const lrSchedules = ['constant', 'linear', 'cosine'] as const;
/**
 * Activation checkpointing: keep each transformer layer's input only and recompute the layer
 * in the backward pass (less memory, one more forward pass of compute). 'auto' turns it on when
 * the run's memory estimate without it does not fit the device (core/runs/job.ts jobFor).
 */
export const checkpointingChoices = ['auto', 'on', 'off'] as const;
export const trainBackends = ['auto', 'cpu', 'cuda', 'vulkan', 'metal'] as const;
export const presetIds = ['quick', 'balanced', 'thorough'] as const;
export type PresetId = (typeof presetIds)[number];
/**
 * Every value `preset` can hold: a preset, or "custom" (the app writes it once a field of a
 * preset is changed). Every shell accepts each of them, so a config the app wrote (a clone, the
 * last-used config, `runs show --json`) works unchanged in `overnight train --config`.
 */
export const presetChoices = [...presetIds, 'custom'] as const;
export type PresetChoice = (typeof presetChoices)[number];

const int = (what: string) =>
  z.number({ error: `${what} must be a number` }).int(`${what} must be a whole number`);

/**
 * Defaults of the optimizer fields of a run config (AdamW and gradient clipping). The schema
 * below uses them, and the training process falls back to them for a job that omits a value.
 */
export const optimizerDefaults = {
  gradClipNorm: 1,
  weightDecay: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  /** AdamW's epsilon: not a config field, the trainer's constant (passed explicitly). */
  adamEps: 1e-8,
} as const;

/**
 * The trainer's backward route through frozen weights on a GPU (native/src/trainer.cpp,
 * ov_route_backward) dequantizes a weight to F32 and transposes it, 8 bytes per element, for the
 * one product that reads it; weights are split into row blocks of at most this many MiB of those
 * copies (a Llama-3-8B output projection would be 4.2 GB whole). Not a config field: every run
 * passes it, and the memory estimate counts it on a GPU (core/runs/estimate.ts).
 */
export const ROUTE_CHUNK_MIB = 64;

/** "HH:MM" on the engine machine's clock: the next time it is that hour. */
const clockTime = z
  .string()
  .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'finishBy must be a time like 07:00 (24-hour HH:MM)');

/**
 * Every field a run can be given. Omitted fields take the defaults below (the Balanced preset's
 * values); a preset overrides some of them, and the user's own fields override the preset.
 */
export const runConfigFields = z
  .object({
    /** Library model id, or a path to a .gguf file (the engine adds it to the library). */
    model: z.string().min(1, 'model is required: a model id or a path to a .gguf file'),
    /** Dataset id, or a path to a dataset file (the engine imports it). */
    dataset: z.string().min(1, 'dataset is required: a dataset id or a path to a dataset file'),
    preset: z.enum(presetChoices).default('balanced'),

    // LoRA
    loraRank: int('loraRank')
      .min(1, 'loraRank must be at least 1')
      .max(512, 'loraRank must be at most 512')
      .default(16),
    /** Scale = alpha / rank. */
    loraAlpha: z.number().positive('loraAlpha must be greater than 0').max(4096).default(32),
    loraTargets: z
      .array(z.enum(loraTargets))
      .min(1, `loraTargets must name at least one layer (${loraTargets.join(', ')})`)
      .default(['attn_q', 'attn_k', 'attn_v', 'attn_output']),

    // Optimizer (AdamW) and learning-rate schedule
    learningRate: z
      .number()
      .gt(0, 'learningRate must be greater than 0')
      .max(1, 'learningRate must be at most 1')
      .default(2e-4),
    lrSchedule: z.enum(lrSchedules).default('cosine'),
    /**
     * Optimizer steps of linear warm-up. Step k (1-based) of the first warmupSteps trains at
     * learningRate * k / warmupSteps: the first step at learningRate / warmupSteps (never at 0,
     * so no step is wasted) and the last warm-up step at learningRate; the schedule decays from
     * there. 0 = no warm-up (core/training/schedule.ts lrAt).
     */
    warmupSteps: int('warmupSteps').min(0).max(100_000).default(20),
    /** Floor of the decaying schedules. */
    minLearningRate: z.number().min(0, 'minLearningRate must be 0 or more').default(0),
    /**
     * Gradient clipping by global norm: when the L2 norm of all LoRA gradients together exceeds
     * this, every gradient is scaled down to it before the AdamW update. 0 = no clipping. Every
     * step reports the norm before clipping (RunMetric.gradNorm).
     */
    gradClipNorm: z
      .number({ error: 'gradClipNorm must be a number' })
      .min(0, 'gradClipNorm must be 0 (no clipping) or more')
      .max(1e6, 'gradClipNorm must be at most 1000000')
      .default(optimizerDefaults.gradClipNorm),
    /** AdamW's decoupled weight decay of the LoRA matrices (0 = none). */
    weightDecay: z
      .number({ error: 'weightDecay must be a number' })
      .min(0, 'weightDecay must be 0 or more')
      .max(1, 'weightDecay must be at most 1')
      .default(optimizerDefaults.weightDecay),
    /** AdamW's decay rate of the first moment (the gradient's running mean). */
    adamBeta1: z
      .number({ error: 'adamBeta1 must be a number' })
      .min(0, 'adamBeta1 must be 0 or more')
      .lt(1, 'adamBeta1 must be below 1')
      .default(optimizerDefaults.adamBeta1),
    /** AdamW's decay rate of the second moment (the squared gradient's running mean). */
    adamBeta2: z
      .number({ error: 'adamBeta2 must be a number' })
      .min(0, 'adamBeta2 must be 0 or more')
      .lt(1, 'adamBeta2 must be below 1')
      .default(optimizerDefaults.adamBeta2),

    // How long: maxSteps wins over epochs; finishBy picks maxSteps from a calibration.
    epochs: z.number().gt(0, 'epochs must be greater than 0').max(1000).default(2),
    maxSteps: int('maxSteps').min(1, 'maxSteps must be at least 1').nullable().default(null),
    finishBy: clockTime.nullable().default(null),

    /**
     * Training windows (sequences) per optimizer step: microBatch windows per graph, and the
     * gradients of effectiveBatch / microBatch such micro-batches accumulated before each update
     * (gradient accumulation is derived, not a field). Must be a multiple of microBatch.
     */
    effectiveBatch: int('effectiveBatch')
      .min(1, 'effectiveBatch must be at least 1')
      .max(4096)
      .default(8),
    /**
     * Windows the trainer computes together in one graph (batched matmuls): faster per token
     * than one at a time where the device has room, more activation memory. The default of 1
     * stands until the batched trainer's tokens/s are measured (issue #11).
     */
    microBatch: int('microBatch')
      .min(1, 'microBatch must be at least 1')
      .max(64, 'microBatch must be at most 64')
      .default(1),
    /** Activation checkpointing (checkpointingChoices above). */
    checkpointing: z.enum(checkpointingChoices).default('auto'),
    /** Tokens per training window. Must not exceed the model's context length. */
    sequenceLength: int('sequenceLength')
      .min(16, 'sequenceLength must be at least 16')
      .max(131_072)
      .default(512),

    // Validation and checkpoints
    validationShare: z
      .number()
      .min(0, 'validationShare must be 0 or more')
      .max(0.5, 'validationShare must be at most 0.5')
      .default(0.1),
    /** Optimizer steps between validation passes (each also samples the probe prompts). */
    evalInterval: int('evalInterval').min(1, 'evalInterval must be at least 1').default(50),
    checkpointInterval: int('checkpointInterval')
      .min(1, 'checkpointInterval must be at least 1')
      .default(100),
    /** Checkpoints kept on disk besides the best one (oldest removed first). */
    keepCheckpoints: int('keepCheckpoints')
      .min(1, 'keepCheckpoints must be at least 1')
      .max(100)
      .default(3),
    earlyStopping: z.boolean().default(true),
    /** Evaluations without a validation-loss improvement of at least minDelta before stopping. */
    patience: int('patience').min(1, 'patience must be at least 1').max(1000).default(3),
    minDelta: z.number().min(0).default(0.001),
    /** The adapter a completed run ends with: the best validation loss, or the last step. */
    finalAdapter: z.enum(['best', 'last']).default('best'),

    seed: int('seed')
      .min(0)
      .max(2 ** 31 - 1)
      .default(42),

    // Hardware
    backend: z.enum(trainBackends).default('auto'),
    /** Layers offloaded to the GPU; -1 = all. */
    gpuLayers: int('gpuLayers').min(-1).default(-1),
    /** CPU threads; 0 = let the trainer pick. */
    threads: int('threads').min(0).max(1024).default(0),

    /** Prompts the trainer answers with the current adapter at every evaluation. */
    probePrompts: z
      .array(z.string().min(1, 'a probe prompt must not be empty'))
      .max(8, 'at most 8 probe prompts')
      .default([]),

    // Failure handling
    /** Automatic resumes from the last checkpoint after the training process dies. */
    maxRetries: int('maxRetries').min(0).max(20).default(3),
    /** On out-of-memory, retry from the last checkpoint with a shorter sequence (halved each time, not below 64). */
    oomFallback: z.boolean().default(true),
  })
  .strict();

/**
 * Keys earlier versions wrote into run configs that no longer mean anything. A stored run, the
 * remembered last config or a config file the app wrote may still hold them: they are accepted
 * and dropped (the schema is strict otherwise). `gradAccumulation` had to equal effectiveBatch
 * (one window per micro-batch); it is now derived, effectiveBatch / microBatch, and such a
 * config reads as microBatch 1, which is what it trained with.
 */
export const retiredRunConfigKeys: readonly string[] = ['gradAccumulation'];

type RunConfigFieldsInput = z.input<typeof runConfigFields>;

function dropRetiredKeys(raw: RunConfigFieldsInput): RunConfigFieldsInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  if (!retiredRunConfigKeys.some((k) => Object.hasOwn(raw, k))) return raw;
  const kept: Record<string, unknown> = { ...raw };
  for (const k of retiredRunConfigKeys) delete kept[k];
  return kept as RunConfigFieldsInput;
}

/** The fields plus the rules that tie several fields together. */
export const runConfigSchema = z
  .preprocess(dropRetiredKeys, runConfigFields)
  .superRefine((c, ctx) => {
    if (c.minLearningRate > c.learningRate) {
      ctx.addIssue({
        code: 'custom',
        path: ['minLearningRate'],
        message: `minLearningRate (${c.minLearningRate}) must not exceed learningRate (${c.learningRate})`,
      });
    }
    if (c.effectiveBatch % c.microBatch !== 0) {
      const lower = c.effectiveBatch - (c.effectiveBatch % c.microBatch);
      const upper = lower + c.microBatch;
      ctx.addIssue({
        code: 'custom',
        path: ['effectiveBatch'],
        message:
          `effectiveBatch (${c.effectiveBatch}) must be a multiple of microBatch (${c.microBatch}): ` +
          `each optimizer step accumulates whole micro-batches; choose ${lower > 0 ? `${lower} or ` : ''}${upper}, or another microBatch`,
      });
    }
    if (c.earlyStopping && c.validationShare === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['earlyStopping'],
        message:
          'earlyStopping needs a validation set: set validationShare above 0 or turn earlyStopping off',
      });
    }
  });
export type RunConfig = z.output<typeof runConfigSchema>;
export type RunConfigInput = z.input<typeof runConfigSchema>;

/**
 * Every field's default, read from the schema above (the one place they are written): the
 * New-run form starts from them and the training job (contract/training.ts) falls back to them.
 */
export const runConfigDefaults: Omit<RunConfig, 'model' | 'dataset'> = (() => {
  const { model: _m, dataset: _d, ...rest } = runConfigSchema.parse({ model: '-', dataset: '-' });
  return rest;
})();

/** Micro-batches whose gradients each optimizer step accumulates: effectiveBatch / microBatch. */
export function gradAccumulation(cfg: Pick<RunConfig, 'effectiveBatch' | 'microBatch'>): number {
  return cfg.effectiveBatch / cfg.microBatch;
}

/** Layers a config's `gpuLayers` puts on the GPU: -1 (all) is 999 to the trainer, the CPU none. */
export function trainerGpuLayers(cfg: Pick<RunConfig, 'backend' | 'gpuLayers'>): number {
  return cfg.backend === 'cpu' ? 0 : cfg.gpuLayers < 0 ? 999 : cfg.gpuLayers;
}

export interface Preset {
  id: PresetId;
  label: string;
  /** One line shown under the choice. */
  explain: string;
  config: Partial<RunConfig>;
}

/** The three starting points. Fields not listed keep the schema's defaults. */
export const presets: readonly Preset[] = [
  {
    id: 'quick',
    label: 'Quick try',
    explain:
      'A small adapter on the attention layers for a few hundred steps: see in minutes whether the data teaches anything.',
    config: {
      preset: 'quick',
      loraRank: 8,
      loraAlpha: 16,
      loraTargets: ['attn_q', 'attn_v'],
      learningRate: 3e-4,
      epochs: 1,
      maxSteps: 200,
      warmupSteps: 10,
      effectiveBatch: 4,
      sequenceLength: 512,
      evalInterval: 25,
      checkpointInterval: 50,
    },
  },
  {
    id: 'balanced',
    label: 'Balanced',
    explain:
      'Rank 16 on every attention layer for two epochs with early stopping: a good default for a night.',
    config: { preset: 'balanced' },
  },
  {
    id: 'thorough',
    label: 'Thorough',
    explain:
      'Rank 32 on attention and feed-forward layers, longer sequences, three epochs at a gentler rate: the most quality, the most time.',
    config: {
      preset: 'thorough',
      loraRank: 32,
      loraAlpha: 64,
      loraTargets: [...loraTargets],
      learningRate: 1e-4,
      epochs: 3,
      warmupSteps: 50,
      effectiveBatch: 16,
      sequenceLength: 1024,
      evalInterval: 100,
      checkpointInterval: 200,
      patience: 4,
    },
  },
];

/**
 * The config a preset gives for a model + dataset, with the user's own fields on top. "custom"
 * applies no preset: the fields (with the schema's defaults) are the whole config.
 */
export function presetConfig(id: PresetChoice, fields: RunConfigInput): RunConfigInput {
  const p = presets.find((x) => x.id === id);
  return { ...(p?.config ?? {}), ...fields };
}

export const runStates = [
  'queued',
  'running',
  'paused',
  'completed',
  'failed',
  'cancelled',
  'interrupted',
] as const;
export type RunState = (typeof runStates)[number];

export const memoryVerdicts = ['fits', 'tight', 'will-not-fit'] as const;

export const memoryEstimateSchema = z.object({
  /** Bytes the trainer is expected to hold at its peak. */
  totalBytes: z.number().nonnegative(),
  /**
   * Named parts of totalBytes (core/runs/estimate.ts: weights, lora, checkpoints, compute,
   * staging, overhead; estimates stored before issue #11 have other names).
   */
  parts: z.record(z.string(), z.number().nonnegative()),
  /** Whether the estimate assumes activation checkpointing. Absent in older estimates. */
  checkpointing: z.boolean().optional(),
  /** The device it was compared with: a GPU name, or "CPU (system RAM)". */
  device: z.string(),
  deviceFreeBytes: z.number().nonnegative(),
  verdict: z.enum(memoryVerdicts),
  /** What to change when tight or not fitting, in plain words. */
  advice: z.array(z.string()),
});
export type MemoryEstimate = z.infer<typeof memoryEstimateSchema>;

export const timeEstimateSchema = z.object({
  /** Optimizer steps measured by the calibration. */
  calibratedSteps: z.number().int().nonnegative(),
  secondsPerStep: z.number().nonnegative(),
  tokensPerSecond: z.number().nonnegative(),
  totalSteps: z.number().int().nonnegative(),
  totalSeconds: z.number().nonnegative(),
  /** Peak memory the calibration measured, when the trainer reports it. */
  measuredPeakBytes: z.number().nonnegative().nullable(),
});
export type TimeEstimate = z.infer<typeof timeEstimateSchema>;

export const runEstimateSchema = z.object({
  memory: memoryEstimateSchema,
  /**
   * Whether the run trains with activation checkpointing (config 'auto': on when the memory
   * estimate without it does not fit). Absent in estimates stored before the choice existed.
   */
  checkpointing: z.boolean().optional(),
  /** Windows in the training split, optimizer steps per epoch, and the steps the run will take. */
  trainWindows: z.number().int().nonnegative(),
  /**
   * Tokens in the packed windows / (windows x sequence length) (core/datasets/pack.ts): the rest
   * is padding. Absent in estimates stored before packing filled windows.
   */
  fillRatio: z.number().min(0).max(1).optional(),
  stepsPerEpoch: z.number().int().nonnegative(),
  totalSteps: z.number().int().nonnegative(),
  /** Null unless a calibration was asked for. */
  time: timeEstimateSchema.nullable(),
});
export type RunEstimate = z.infer<typeof runEstimateSchema>;

export const runSchema = z.object({
  id: runIdSchema,
  name: z.string(),
  notes: z.string(),
  state: z.enum(runStates),
  /** Why the run is in its state, in plain words ("out of memory at step 120: ..."). */
  stateReason: z.string().nullable(),
  config: runConfigSchema,
  /** Resolved library ids (config.model / config.dataset may have been paths). */
  modelId: z.string(),
  datasetId: z.string(),
  folder: z.string(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  step: z.number().int().nonnegative(),
  totalSteps: z.number().int().nonnegative(),
  /** Tokens trained so far (assistant tokens counted in the loss). */
  tokens: z.number().nonnegative(),
  bestValLoss: z.number().nullable(),
  bestStep: z.number().int().nullable(),
  /** Automatic resumes used so far after crashes (bounded by config.maxRetries). */
  retries: z.number().int().nonnegative(),
  /**
   * Overrides applied after out-of-memory (a shorter sequence). Runs stored by earlier versions
   * may also hold `gradAccumulation` here: the store drops it when it reads the row.
   */
  overrides: z.object({
    sequenceLength: z.number().int().optional(),
  }),
  adapterPath: z.string().nullable(),
  estimate: runEstimateSchema.nullable(),
});
export type Run = z.infer<typeof runSchema>;

export const runMetricSchema = z.object({
  step: z.number().int().nonnegative(),
  epoch: z.number().nonnegative(),
  loss: z.number(),
  lr: z.number(),
  tokensPerSecond: z.number().nonnegative(),
  /** Cumulative trained tokens after this step. */
  tokens: z.number().nonnegative(),
  /**
   * Memory the run uses on its device after this step. On a GPU backend: the trainer's own
   * buffers there (model weights + LoRA/optimizer + compute, native trainer.memory()), not the
   * whole device's usage. On the CPU backend: the training process's peak resident memory (the
   * budget is system RAM, which the whole process draws on).
   */
  memoryBytes: z.number().nonnegative().nullable(),
  /**
   * Global L2 norm of the step's LoRA gradients before clipping (config.gradClipNorm). Null for
   * steps stored before the trainer reported it, and for a norm that is not finite.
   */
  gradNorm: z.number().nonnegative().nullable(),
  /** Unix ms when the step finished. */
  time: z.number(),
});
export type RunMetric = z.infer<typeof runMetricSchema>;

export const runEvalSchema = z.object({
  step: z.number().int().nonnegative(),
  valLoss: z.number(),
  time: z.number(),
});
export type RunEval = z.infer<typeof runEvalSchema>;

export const runProbeSchema = z.object({
  step: z.number().int().nonnegative(),
  index: z.number().int().nonnegative(),
  prompt: z.string(),
  output: z.string(),
});
export type RunProbe = z.infer<typeof runProbeSchema>;

export const checkpointKinds = ['interval', 'manual', 'pause', 'best', 'final'] as const;
export const runCheckpointSchema = z.object({
  step: z.number().int().nonnegative(),
  path: z.string(),
  valLoss: z.number().nullable(),
  kind: z.enum(checkpointKinds),
  isBest: z.boolean(),
  createdAt: z.string(),
});
export type RunCheckpoint = z.infer<typeof runCheckpointSchema>;

export const runSettingsSchema = z.object({
  /** Resume interrupted runs when the engine starts (after an app kill or power loss). */
  autoResume: z.boolean(),
});
export type RunSettings = z.infer<typeof runSettingsSchema>;

const byId = z.object({ id: runIdSchema });
const ok = z.object({ ok: z.literal(true) });

/**
 * Where the trainer's compute graph runs (the native trainer's placement report): nodes per ggml
 * backend ('CPU', 'Vulkan0', ...) and the ops left on the CPU while a GPU backend is in use, each
 * with the reason. Written by the supervisor to `placement.json` in the run folder on 'ready'.
 */
export const runPlacementSchema = z.object({
  nodes: z.record(z.string(), z.number().int().min(0)),
  cpuOps: z.array(z.object({ op: z.string(), reason: z.string(), count: z.number().int().min(0) })),
  nNodes: z.number().int().min(0),
  nSplits: z.number().int().min(0),
  /** Input gradients built by the dequantize + mul_mat route instead of OUT_PROD. */
  nRouted: z.number().int().min(0),
});
export type RunPlacement = z.infer<typeof runPlacementSchema>;

export const runDetailSchema = z.object({
  run: runSchema,
  evals: z.array(runEvalSchema),
  checkpoints: z.array(runCheckpointSchema),
  probes: z.array(runProbeSchema),
  /** The trainer's placement report of the latest start; null before the trainer was ready. */
  placement: runPlacementSchema.nullable(),
});
export type RunDetail = z.infer<typeof runDetailSchema>;

export const runsMethods = {
  'runs.presets': method(
    z.object({}),
    z.array(
      z.object({
        id: z.enum(presetIds),
        label: z.string(),
        explain: z.string(),
        config: runConfigFields.partial(),
      }),
    ),
    'The presets (Quick try, Balanced, Thorough) with their one-line explanations.',
  ),
  'runs.lastConfig': method(
    z.object({}),
    runConfigSchema.nullable(),
    'The config of the last run created, to start the New-run form from.',
  ),
  'runs.validate': method(
    z.object({ config: z.unknown() }),
    z.object({ config: runConfigSchema, problems: z.array(z.string()) }),
    'Check a config against its model and dataset without starting anything.',
  ),
  'runs.estimate': method(
    z.object({ config: z.unknown(), calibrate: z.boolean().default(false) }),
    runEstimateSchema,
    'Memory estimate against the device, steps, and (with calibrate) a time estimate from a few real steps.',
  ),
  'runs.create': method(
    z.object({ config: z.unknown(), name: z.string().min(1).optional() }),
    runSchema,
    'Validate a config and queue a run (it starts when the GPU is free).',
  ),
  'runs.clone': method(byId, runConfigSchema, "A run's config, to start a new run from."),
  'runs.list': method(
    z.object({ state: z.enum(runStates).optional(), search: z.string().optional() }),
    z.array(runSchema),
    'List runs, newest first.',
  ),
  'runs.show': method(
    byId,
    runDetailSchema,
    'One run with its evals, checkpoints and probe samples.',
  ),
  'runs.metrics': method(
    z.object({
      id: runIdSchema,
      fromStep: z.number().int().min(0).default(0),
      toStep: z.number().int().min(0).optional(),
    }),
    z.array(runMetricSchema),
    'Step metrics of a run in a step range (inclusive), for backfilling a chart.',
  ),
  'runs.pause': method(
    byId,
    runSchema,
    'Checkpoint, then stop; resume later from that checkpoint.',
  ),
  'runs.resume': method(
    byId,
    runSchema,
    'Queue a paused, failed or interrupted run to continue from its last checkpoint; a queued, running or completed run is returned unchanged, a cancelled one is refused.',
  ),
  'runs.cancel': method(
    byId,
    runSchema,
    'Stop a run for good (a queued run is removed from the queue).',
  ),
  'runs.checkpointNow': method(byId, ok, 'Ask the running trainer to write a checkpoint now.'),
  'runs.rename': method(
    z.object({ id: runIdSchema, name: z.string().min(1, 'name must not be empty') }),
    runSchema,
    'Rename a run.',
  ),
  'runs.setNotes': method(
    z.object({ id: runIdSchema, notes: z.string() }),
    runSchema,
    "Replace a run's notes.",
  ),
  'runs.delete': method(
    byId,
    z.object({ deleted: z.boolean() }),
    'Delete a finished run with its files.',
  ),
  'runs.exportCheckpoint': method(
    z.object({ id: runIdSchema, step: z.number().int().nonnegative() }),
    z.object({ path: z.string() }),
    'Write an adapter GGUF from one kept checkpoint (in the run folder: adapter-step-N.gguf).',
  ),
  'runs.compare': method(
    z.object({ ids: z.array(runIdSchema).min(1).max(8) }),
    z.object({
      runs: z.array(
        z.object({
          run: runSchema,
          metrics: z.array(runMetricSchema),
          evals: z.array(runEvalSchema),
        }),
      ),
      /** Config fields whose values differ between the runs, each with one value per run (in order). */
      diff: z.array(z.object({ field: z.string(), values: z.array(z.unknown()) })),
    }),
    'Curves and the config difference of several runs.',
  ),
  'runs.settings': method(z.object({}), runSettingsSchema, 'Run settings (auto-resume).'),
  'runs.setSettings': method(
    runSettingsSchema.partial(),
    runSettingsSchema,
    'Change run settings.',
  ),
} as const;

export const runsEvents = {
  'runs.state': event(runSchema, 'A run changed state (or its progress summary changed).'),
  'runs.step': event(
    z.object({ id: runIdSchema, metrics: z.array(runMetricSchema) }),
    'New step metrics of a run (batched: at most a few per second).',
  ),
  'runs.eval': event(runEvalSchema.extend({ id: runIdSchema }), 'A validation pass finished.'),
  'runs.probe': event(
    z.object({ id: runIdSchema, step: z.number().int(), probes: z.array(runProbeSchema) }),
    'Probe answers sampled at an evaluation.',
  ),
  'runs.checkpoint': event(
    runCheckpointSchema.extend({ id: runIdSchema }),
    'A checkpoint was written.',
  ),
} as const;
