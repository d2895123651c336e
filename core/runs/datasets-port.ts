/**
 * What the runs domain needs from the datasets domain, as one interface the engine wires to
 * core/datasets: find a dataset by id (or import a path), count what a config would train on,
 * and write the trainer's input (tokenized with the model's chat template, label-masked,
 * split with the run's seed) into the run folder. The runs domain never reads dataset files.
 */
import type { ModelInfo } from '../../contract/index.ts';

export interface RunDatasetRef {
  id: string;
  name: string;
  records: number;
}

export interface DatasetPlanInput {
  datasetId: string;
  model: ModelInfo;
  sequenceLength: number;
  validationShare: number;
  seed: number;
}

export interface DatasetPlan {
  trainWindows: number;
  validationWindows: number;
  /** Tokens whose labels are trained (assistant tokens by default), training split only. */
  trainedTokens: number;
  /** Tokens in the packed windows / (windows x sequence length) (core/datasets/pack.ts). */
  fillRatio: number;
}

export interface PreparedInput extends DatasetPlan {
  /** Files in the run folder the trainer reads (its job spec names them). */
  trainFile: string;
  validationFile: string | null;
}

/** A probe prompt as the trainer's token ids; `label` is the user's prompt text (shown in the UI). */
export interface ProbePrompt {
  tokens: number[];
  label: string;
}

export interface RunDatasets {
  /** A dataset id, or a path to a file to import; NOT_FOUND / INVALID_FILE otherwise. */
  resolve(idOrPath: string): Promise<RunDatasetRef>;
  plan(input: DatasetPlanInput): Promise<DatasetPlan>;
  prepare(input: DatasetPlanInput & { folder: string }): Promise<PreparedInput>;
  /**
   * Probe prompts as the model will be asked them: each as one user turn rendered with the
   * model's chat template and its generation prompt (a chat dataset), or as plain text after
   * BOS (a text dataset, or a model without a template), tokenized with the model's vocabulary.
   * Optional: without it the trainer tokenizes the prompts as plain text.
   */
  probePrompts?(input: {
    datasetId: string;
    model: ModelInfo;
    prompts: readonly string[];
  }): Promise<ProbePrompt[]>;
}
