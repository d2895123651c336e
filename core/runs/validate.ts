/**
 * Everything checked before a run is queued, so a bad config is refused with a clear message
 * before anything starts: the schema (ranges, rank 0, lr <= 0 ...), then the model (in the
 * library or added from a path; file still there; trainable; sequence length within its
 * context), then the dataset (exists, not empty, has tokens to train on at this sequence length).
 * All problems found are reported together, one per line.
 */
import {
  OvernightError,
  runConfigSchema,
  zodIssueLines,
  type ModelInfo,
  type RunConfig,
} from '../../contract/index.ts';
import type { RunDatasets } from './datasets-port.ts';

export interface ModelSource {
  get(id: string): ModelInfo | null;
  add(path: string): Promise<ModelInfo>;
}

export interface ValidatedConfig {
  config: RunConfig;
  model: ModelInfo;
  datasetId: string;
  /** Training windows and trained (label) tokens at this sequence length and split. */
  trainWindows: number;
  validationWindows: number;
  trainedTokens: number;
}

const looksLikePath = (s: string) => s.includes('/') || s.includes('\\') || /\.[a-z0-9]+$/i.test(s);

/** The schema's messages, one per field: "loraRank: loraRank must be at least 1". */
export function parseConfig(raw: unknown): RunConfig {
  const r = runConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  const lines = zodIssueLines(r.error, 'config');
  throw new OvernightError('INVALID_INPUT', `the run config is not valid:\n${lines.join('\n')}`);
}

export async function resolveModel(models: ModelSource, ref: string): Promise<ModelInfo> {
  const known = models.get(ref);
  if (known) return known;
  if (looksLikePath(ref)) return models.add(ref);
  throw new OvernightError(
    'NOT_FOUND',
    `model: no model with id "${ref}" in the library (give an id or a path to a .gguf file)`,
  );
}

export async function validateRun(
  raw: unknown,
  deps: { models: ModelSource; datasets: RunDatasets },
): Promise<ValidatedConfig> {
  const config = parseConfig(raw);
  const model = await resolveModel(deps.models, config.model);
  const problems: string[] = [];
  if (!model.fileExists) {
    throw new OvernightError(
      'FILE_NOT_FOUND',
      `model: the file of "${model.name}" is no longer at ${model.path} (moved or deleted); add it again from its new place`,
    );
  }
  if (!model.trainable.ok)
    problems.push(
      `model: "${model.name}" cannot be trained: ${model.trainable.reason ?? 'unsupported'}`,
    );
  if (model.contextLength > 0 && config.sequenceLength > model.contextLength) {
    problems.push(
      `sequenceLength: ${config.sequenceLength} is beyond the model's context length (${model.contextLength}); choose ${model.contextLength} or less`,
    );
  }
  if (config.gradAccumulation !== config.effectiveBatch) {
    // core/training/run.ts runs every window as its own micro-batch and accumulates the
    // gradients of `windowsPerStep` windows: micro-batch 1 is the only one it has.
    problems.push(
      `gradAccumulation: the trainer runs one sequence per micro-batch, so gradAccumulation must equal effectiveBatch (${config.effectiveBatch})`,
    );
  }
  if (problems.length) throw new OvernightError('INVALID_INPUT', problems.join('\n'));

  const dataset = await deps.datasets.resolve(config.dataset);
  if (dataset.records === 0) {
    throw new OvernightError(
      'INVALID_INPUT',
      `dataset: "${dataset.name}" is empty (0 records): nothing to train on`,
    );
  }
  const plan = await deps.datasets.plan({
    datasetId: dataset.id,
    model,
    sequenceLength: config.sequenceLength,
    validationShare: config.validationShare,
    seed: config.seed,
  });
  if (plan.trainedTokens <= 0 || plan.trainWindows <= 0) {
    throw new OvernightError(
      'INVALID_INPUT',
      `dataset: "${dataset.name}" has no tokens to train on (${dataset.records} records; ` +
        `every assistant answer is empty or cut off at sequence length ${config.sequenceLength})`,
    );
  }
  if (config.earlyStopping && plan.validationWindows === 0) {
    throw new OvernightError(
      'INVALID_INPUT',
      `validationShare: ${config.validationShare} of "${dataset.name}" leaves no validation window; raise it or turn earlyStopping off`,
    );
  }
  return {
    config,
    model,
    datasetId: dataset.id,
    trainWindows: plan.trainWindows,
    validationWindows: plan.validationWindows,
    trainedTokens: plan.trainedTokens,
  };
}
