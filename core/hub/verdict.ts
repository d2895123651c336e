/**
 * "Will it train here?" before a download: the architecture check of the model library
 * (trainability.ts) and the memory badge of the training page (runs/estimate.ts) at the default
 * run config, against this machine's training device (runs/device.ts).
 */
import {
  runConfigSchema,
  type HubFit,
  type RunConfig,
  type TrainVerdict,
} from '../../contract/index.ts';
import { architectureRefusal, tensorTypeRefusal } from '../models/trainability.ts';
import { memoryEstimate, type ModelDims } from '../runs/estimate.ts';

/** The config the badge assumes: the schema's defaults (the Balanced preset, 512 tokens). */
export function defaultFitConfig(): RunConfig {
  return runConfigSchema.parse({ model: '-', dataset: '-' });
}

/** The training device; a GPU `backend` adds the backward route's transient copies to the fit. */
export type Device = { name: string; freeBytes: number; backend?: string };

export function fitFor(dims: ModelDims | null, device: Device, reason?: string): HubFit {
  const cfg = defaultFitConfig();
  if (!dims) {
    return {
      verdict: 'unknown',
      totalBytes: null,
      device: device.name,
      deviceFreeBytes: device.freeBytes,
      sequenceLength: cfg.sequenceLength,
      reason: reason ?? "the model's dimensions are unknown",
    };
  }
  const est = memoryEstimate(cfg, dims, device);
  return {
    verdict: est.verdict,
    totalBytes: est.totalBytes,
    device: est.device,
    deviceFreeBytes: est.deviceFreeBytes,
    sequenceLength: cfg.sequenceLength,
    reason: null,
  };
}

export interface HeaderFacts {
  architecture: string;
  expertCount: number;
  tensorNames: string[];
}

/** Architecture + tensor-type verdict; `tensorTypes` null when unknown. */
export function architectureVerdict(
  facts: HeaderFacts | null,
  guessedArchitecture: string | null,
  tensorTypes: string[] | null,
  fit: HubFit,
  splitPart: boolean,
): TrainVerdict {
  const arch = facts?.architecture ?? guessedArchitecture;
  const source: TrainVerdict['source'] = facts
    ? 'header'
    : guessedArchitecture
      ? 'metadata'
      : 'unknown';
  if (splitPart) {
    return {
      architecture: arch,
      source,
      supported: false,
      reason: 'one part of a split GGUF: the library takes single-file models only',
      fit,
    };
  }
  if (!arch) {
    return {
      architecture: null,
      source,
      supported: null,
      reason: 'the architecture could not be read (the file header was not reachable)',
      fit,
    };
  }
  const refusal = architectureRefusal(
    facts ?? { architecture: arch, expertCount: 0, tensorNames: [] },
  );
  const typeRefusal =
    refusal === null && tensorTypes
      ? tensorTypeRefusal(Object.fromEntries(tensorTypes.map((t) => [t, 1])))
      : null;
  const reason = refusal ?? typeRefusal;
  return { architecture: arch, source, supported: reason === null, reason, fit };
}
