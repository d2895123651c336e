/**
 * One GPU, one budget: what loading a model for chat would take, and whether it fits next to a
 * training run. Arithmetic from the model's dimensions (core/runs/estimate.ts's ModelDims):
 *   weights  = the model file's tensor bytes (all layers offloaded)
 *   kv       = columns x 2 x L x context x Ekv x 2 (one F16 KV cache per column's context)
 *   compute  = columns x (V x 512 x 4 + 4 x 512 x (E + F) x 4) (logits and activations of a
 *              512-token batch, llama.cpp's default micro-batch)
 *   overhead = 64 MiB + 5%
 * The GPU's free memory is measured now; a run that is training may still grow to its
 * estimated peak, so the part of its estimate it has not reached yet is kept free for it.
 */
import type { ChatMemory } from '../../contract/index.ts';
import type { ModelDims } from '../runs/estimate.ts';

const MiB = 1024 * 1024;

export function chatMemoryBytes(d: ModelDims, columns: number, contextSize: number): number {
  const kvWidth = (d.embd * d.kvHeads) / Math.max(1, d.heads);
  const kv = columns * 2 * d.layers * contextSize * kvWidth * 2;
  const compute = columns * (d.vocab * 512 * 4 + 4 * 512 * (d.embd + d.ffn) * 4);
  const sum = d.weightBytes + kv + compute;
  return Math.round(sum + 64 * MiB + 0.05 * sum);
}

export interface ChatMemoryInput {
  needBytes: number;
  /** The inference runtime's GPU (null: none) and its free memory now. */
  gpu: { name: string; freeBytes: number } | null;
  /** The run holding the device, with what it may still grow by (estimated peak - measured). */
  training: { name: string; growthBytes: number } | null;
}

function gb(n: number): string {
  return `${(n / 1e9).toFixed(n < 1e9 ? 2 : 1)} GB`;
}

export function chatMemoryVerdict({ needBytes, gpu, training }: ChatMemoryInput): ChatMemory {
  if (!gpu) {
    return {
      needBytes,
      gpu: null,
      gpuFreeBytes: null,
      trainingRun: training?.name ?? null,
      fitsGpu: false,
      recommended: 'cpu',
      message: `no GPU for chat here: the model (about ${gb(needBytes)}) runs on the CPU`,
    };
  }
  const usable = Math.max(0, gpu.freeBytes - (training?.growthBytes ?? 0));
  const fitsGpu = needBytes <= usable * 0.95;
  const while_ = training ? ` while run "${training.name}" trains` : '';
  return {
    needBytes,
    gpu: gpu.name,
    gpuFreeBytes: gpu.freeBytes,
    trainingRun: training?.name ?? null,
    fitsGpu,
    recommended: fitsGpu ? 'gpu' : 'cpu',
    message: fitsGpu
      ? `chat needs about ${gb(needBytes)}; ${gpu.name} has ${gb(usable)} to spare${while_}`
      : `chat needs about ${gb(needBytes)} but ${gpu.name} has only ${gb(usable)} to spare${while_}: loading it there could push ${training ? 'the run' : 'it'} out of memory. Chat on the CPU instead (slower), or wait${training ? ' for the run to finish' : ''}.`,
  };
}
