/**
 * Everything checked before a run is queued, so a bad config is refused with a clear message
 * before anything starts: the schema (ranges, rank 0, lr <= 0 ...), then the model (in the
 * library or added from a path; file still there; trainable; sequence length within its
 * context), then the dataset (exists, not empty, has tokens to train on at this sequence length).
 * The schema comes first and throws (without a config there is nothing to check against);
 * everything after it is returned as data: `validateRun` gives the config and its problems,
 * each with the error code `requireValid` throws for it (runs.create, runs.estimate).
 */
import {
  OvernightError,
  runConfigSchema,
  zodIssueLines,
  type ErrorCode,
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
  /** How full the packed windows are (core/datasets/pack.ts). */
  fillRatio: number;
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

/** One reason a config cannot run, with the code it is refused with. */
export interface RunProblem {
  code: ErrorCode;
  message: string;
}

export interface RunValidation {
  config: RunConfig;
  /** Empty when the run can be queued; then `checked` holds what the checks found. */
  problems: RunProblem[];
  checked: ValidatedConfig | null;
}

/** The checked config, or the problems as one OvernightError (the first one's code). */
export function requireValid(v: RunValidation): ValidatedConfig {
  if (v.checked && v.problems.length === 0) return v.checked;
  const first = v.problems[0] ?? { code: 'INTERNAL' as const, message: 'not validated' };
  throw new OvernightError(first.code, v.problems.map((p) => p.message).join('\n'));
}

/**
 * Every check after the schema. Problems that do not depend on each other (the model's) are
 * reported together; a missing model or dataset ends the checks (nothing left to check against).
 * An OvernightError from the model library or the datasets domain (a path that is not a model,
 * an unknown dataset) is a problem too; anything else is a bug and throws.
 */
export async function validateRun(
  raw: unknown,
  deps: { models: ModelSource; datasets: RunDatasets },
): Promise<RunValidation> {
  const config = parseConfig(raw);
  const refused = (code: ErrorCode, message: string): RunValidation => ({
    config,
    problems: [{ code, message }],
    checked: null,
  });
  try {
    const model = await resolveModel(deps.models, config.model);
    if (!model.fileExists) {
      return refused(
        'FILE_NOT_FOUND',
        `model: the file of "${model.name}" is no longer at ${model.path} (moved or deleted); add it again from its new place`,
      );
    }
    const problems: RunProblem[] = [];
    const invalid = (message: string) => problems.push({ code: 'INVALID_INPUT', message });
    if (!model.trainable.ok)
      invalid(
        `model: "${model.name}" cannot be trained: ${model.trainable.reason ?? 'unsupported'}`,
      );
    if (model.contextLength > 0 && config.sequenceLength > model.contextLength) {
      invalid(
        `sequenceLength: ${config.sequenceLength} is beyond the model's context length (${model.contextLength}); choose ${model.contextLength} or less`,
      );
    }
    if (problems.length) return { config, problems, checked: null };

    const dataset = await deps.datasets.resolve(config.dataset);
    if (dataset.records === 0) {
      return refused(
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
      return refused(
        'INVALID_INPUT',
        `dataset: "${dataset.name}" has no tokens to train on (${dataset.records} records; ` +
          `every assistant answer is empty or cut off at sequence length ${config.sequenceLength})`,
      );
    }
    if (config.earlyStopping && plan.validationWindows === 0) {
      return refused(
        'INVALID_INPUT',
        `validationShare: ${config.validationShare} of "${dataset.name}" leaves no validation window; raise it or turn earlyStopping off`,
      );
    }
    return {
      config,
      problems: [],
      checked: {
        config,
        model,
        datasetId: dataset.id,
        trainWindows: plan.trainWindows,
        validationWindows: plan.validationWindows,
        trainedTokens: plan.trainedTokens,
        fillRatio: plan.fillRatio,
      },
    };
  } catch (err) {
    if (err instanceof OvernightError && err.code !== 'INTERNAL')
      return refused(err.code, err.message);
    throw err;
  }
}
