/**
 * How much memory a run will need and how many steps it will take: pure arithmetic from the
 * model's dimensions and the run config. It is not a measurement; the supervisor compares it
 * with the trainer's measured peak (`memoryBytes` of its step events) and the calibration.
 *
 * Memory model (bytes; T = tokens per micro-batch = microBatch x sequenceLength, the attention
 * term per window (microBatch x H x sequenceLength^2),
 * E = embedding size, F = feed-forward size, H = attention heads, L = layers, V = vocab,
 * Ekv = K/V width = E x kvHeads / heads):
 *   weights      = the model file's tensor bytes (quantized; mmapped or copied to the device)
 *   lora         = 16 x P_lora: F32 A and B (4), their gradients (4), AdamW m and v (8),
 *                  P_lora = rank x (d_in + d_out) per target per layer
 *   activations  = L x [(9E + 3F) x T x 4 + H x T^2 x 4]: ggml-opt keeps every forward tensor
 *                  for the backward pass (no activation checkpointing), measured on CPU with a
 *                  16-layer toy (see /work/shared/notes/llama-cpp-training.md)
 *   logits       = 5 x V x T x 4: logits, mask product, one-hot labels and two gradients
 *   kv           = 2 x L x T x Ekv x 4 (F32 KV cache: training needs F32)
 *   overhead     = 64 MiB + 5% of the rest (graph metadata, scheduler copies, allocator slack)
 */
import type { MemoryEstimate, RunConfig } from '../../contract/index.ts';

export interface ModelDims {
  layers: number;
  embd: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  /** Bytes of the weight tensors (the GGUF file size is a close upper bound). */
  weightBytes: number;
}

const MiB = 1024 * 1024;

/** Input and output widths of each LoRA target (d_in, d_out). */
export function targetShape(
  target: RunConfig['loraTargets'][number],
  d: ModelDims,
): [number, number] {
  const kv = Math.round((d.embd * d.kvHeads) / Math.max(1, d.heads));
  switch (target) {
    case 'attn_q':
    case 'attn_output':
      return [d.embd, d.embd];
    case 'attn_k':
    case 'attn_v':
      return [d.embd, kv];
    case 'ffn_gate':
    case 'ffn_up':
      return [d.embd, d.ffn];
    case 'ffn_down':
      return [d.ffn, d.embd];
  }
}

export function loraParameterCount(
  cfg: Pick<RunConfig, 'loraRank' | 'loraTargets'>,
  d: ModelDims,
): number {
  let per = 0;
  for (const t of cfg.loraTargets) {
    const [i, o] = targetShape(t, d);
    per += cfg.loraRank * (i + o);
  }
  return per * d.layers;
}

export type MemoryConfig = Pick<
  RunConfig,
  'loraRank' | 'loraTargets' | 'sequenceLength' | 'effectiveBatch' | 'microBatch'
>;

/** The named parts of the memory model above, in bytes. */
export function memoryParts(cfg: MemoryConfig, d: ModelDims): Record<string, number> {
  // The trainer holds one micro-batch (microBatch windows) at a time; effectiveBatch /
  // microBatch of them accumulate per step, so effectiveBatch itself costs no memory.
  const S = cfg.sequenceLength;
  const T = cfg.microBatch * S;
  const kvWidth = (d.embd * d.kvHeads) / Math.max(1, d.heads);
  const parts: Record<string, number> = {
    weights: d.weightBytes,
    lora: 16 * loraParameterCount(cfg, d),
    activations:
      d.layers * ((9 * d.embd + 3 * d.ffn) * T * 4 + cfg.microBatch * d.heads * S * S * 4),
    logits: 5 * d.vocab * T * 4,
    kv: 2 * d.layers * T * kvWidth * 4,
  };
  const sum = Object.values(parts).reduce((a, b) => a + b, 0);
  parts.overhead = 64 * MiB + 0.05 * sum;
  return parts;
}

export function estimateBytes(cfg: MemoryConfig, d: ModelDims): number {
  return Object.values(memoryParts(cfg, d)).reduce((a, b) => a + b, 0);
}

/**
 * Bytes of one chunk of the loss: lossChunk output rows x vocab x 4 (F32 logits). The loss's
 * vocabulary-sized buffers (logits, softmax, their gradient) are the largest single tensors of a
 * step (128k vocab x 1024 rows x 4 = 512 MiB each); computed in chunks of rows, their peak is one
 * chunk's. 64 MiB keeps a chunk a small share of a 6-8 GB budget while each chunk's matmul still
 * has hundreds of rows (524 at a 32k vocab, 130 at 128k) to keep the device busy.
 */
export const LOSS_CHUNK_BYTES = 64 * MiB;
/** Fewer rows per chunk than this leaves the output matmul too thin to run at speed. */
export const MIN_LOSS_CHUNK_ROWS = 16;

/** Output rows per loss chunk: about LOSS_CHUNK_BYTES of F32 logits, 16..seqLen rows. */
export function lossChunkRows(vocab: number, seqLen: number): number {
  const rows = Math.floor(LOSS_CHUNK_BYTES / (Math.max(1, vocab) * 4));
  return Math.max(MIN_LOSS_CHUNK_ROWS, Math.min(seqLen, rows));
}

/**
 * Activation checkpointing for a run: 'on' / 'off' as given; 'auto' = on when the estimate
 * without it does not fit (more than FIT_SHARE of the device's free memory), else off (it costs
 * one more forward pass per step).
 */
export function resolveCheckpointing(
  choice: RunConfig['checkpointing'],
  cfg: MemoryConfig,
  d: ModelDims,
  freeBytes: number,
): boolean {
  if (choice !== 'auto') return choice === 'on';
  // estimateBytes models the trainer without checkpointing (every layer's activations kept).
  return estimateBytes(cfg, d) > FIT_SHARE * freeBytes;
}

/** Under 80% of free memory fits; up to 95% is tight (other apps may push it over); above will not fit. */
export const FIT_SHARE = 0.8;
export const TIGHT_SHARE = 0.95;

export function memoryEstimate(
  cfg: MemoryConfig,
  d: ModelDims,
  device: { name: string; freeBytes: number },
): MemoryEstimate {
  const parts = memoryParts(cfg, d);
  const totalBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  const share = device.freeBytes > 0 ? totalBytes / device.freeBytes : Infinity;
  const verdict = share <= FIT_SHARE ? 'fits' : share <= TIGHT_SHARE ? 'tight' : 'will-not-fit';
  const advice: string[] = [];
  if (verdict !== 'fits') {
    const target = device.freeBytes * FIT_SHARE;
    const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
    let seq = cfg.sequenceLength;
    while (seq > 64 && estimateBytes({ ...cfg, sequenceLength: seq }, d) > target)
      seq = Math.floor(seq / 2);
    if (seq < cfg.sequenceLength) {
      advice.push(
        `Shorten the sequence length to ${seq} tokens: about ${gib(estimateBytes({ ...cfg, sequenceLength: seq }, d))}.`,
      );
    }
    if (cfg.loraRank > 8) {
      advice.push(
        `Lower the LoRA rank to 8: about ${gib(estimateBytes({ ...cfg, loraRank: 8 }, d))} (the adapter is a small share; sequence length matters more).`,
      );
    }
    if (d.weightBytes > target) {
      advice.push(
        `The model's weights alone (${gib(d.weightBytes)}) exceed ${Math.round(FIT_SHARE * 100)}% of the free memory: choose a smaller or more quantized model, or offload fewer GPU layers.`,
      );
    }
  }
  return {
    totalBytes,
    parts,
    device: device.name,
    deviceFreeBytes: device.freeBytes,
    verdict,
    advice,
  };
}

/** Optimizer steps: maxSteps when given, else epochs over the training windows. */
export function plannedSteps(
  cfg: Pick<RunConfig, 'epochs' | 'maxSteps' | 'effectiveBatch'>,
  trainWindows: number,
): { stepsPerEpoch: number; totalSteps: number } {
  const stepsPerEpoch = Math.max(1, Math.ceil(trainWindows / cfg.effectiveBatch));
  const totalSteps = cfg.maxSteps ?? Math.max(1, Math.ceil(cfg.epochs * stepsPerEpoch));
  return { stepsPerEpoch, totalSteps };
}

/**
 * Time-budget mode: the next occurrence of `finishBy` ("HH:MM", local time) after `now`, and the
 * steps that fit before it at the calibrated pace, keeping 5% of the time for evals, checkpoints
 * and the final adapter.
 */
export function stepsForDeadline(
  finishBy: string,
  now: Date,
  secondsPerStep: number,
): { deadline: Date; steps: number } {
  const [h, m] = finishBy.split(':').map(Number) as [number, number];
  const deadline = new Date(now);
  deadline.setHours(h, m, 0, 0);
  if (deadline.getTime() <= now.getTime()) deadline.setDate(deadline.getDate() + 1);
  const seconds = ((deadline.getTime() - now.getTime()) / 1000) * 0.95;
  const steps = secondsPerStep > 0 ? Math.max(1, Math.floor(seconds / secondsPerStep)) : 1;
  return { deadline, steps };
}
