/**
 * How much memory a run will need and how many steps it will take: pure arithmetic from the
 * model's dimensions and the run config. It is not a measurement; the supervisor compares it
 * with the trainer's measured peak (`memoryBytes` of its step events) and the calibration, and
 * `npm run bench:memory` checks it against the peak resident memory (VmHWM) of real training
 * processes on generated ~0.1B / ~0.5B / ~1B Q4_K models (docs/runs.md "Memory estimate").
 *
 * Memory model (bytes), following the trainer's buffers as docs/native.md "Memory per component"
 * lists them. Symbols: L layers, E embedding, F feed-forward, H heads, V vocabulary,
 * T = sequenceLength, B = microBatch (windows per graph), r = LoRA rank,
 * P = sum over the trained (target, layer) pairs of (d_in + d_out),
 * S = 4·T²·H·B (one layer's F32 attention scores), A = 4·T·B·(E + F) (one layer's activations),
 * R = output rows of one loss-head evaluation: T·B without checkpointing (one chunk), with it
 * C = min(lossChunk, T·B) (lossChunkRows below).
 *   weights      = the model file's tensor bytes (mmapped on the CPU: every page is touched by
 *                  the forward pass, so all of it is resident)
 *   lora         = 16·r·P + 32 + 4·max(V, F): A and B (4), gradient accumulators (4), AdamW m
 *                  and v (8), plus the dequantize route's row ids
 *   checkpoints  = (L + 3)·4·E·T·B with checkpointing (each layer's input X[0..L] and two
 *                  gradient slots), else 0
 *   compute      = the ggml allocator's plan for the largest graph:
 *                  without checkpointing (one monolithic graph): 12·V·R + L·(S + 4.4·A);
 *                  with it: max(forward S + 1.7·A, head 12·V·C + 4·E·T·B,
 *                                per-layer backward max(S + 5.2·A, 2·S + 4.6·A))
 *   route        = on a GPU only: the backward route's transient F32 copies of one weight block
 *                  (dequantized rows + transpose, 8 bytes per element, at most ROUTE_CHUNK_MIB:
 *                  the output projection and the FFN weights are split into row blocks) plus
 *                  the block sums, two [max(E, F), R or T·B] F32 tensors: min(8·max(V, F)·E,
 *                  ROUTE_CHUNK_MIB) + 8·max(E, F)·T·B; on the CPU OUT_PROD needs none (0)
 *   staging      = 4·V·R (one-hot labels on the host) + 4·T²·B (attention mask)
 *   overhead     = the process's runtime, calibrated on the CPU (node + the addon + libraries:
 *                  RUNTIME_BYTES, fitted to bench:memory's VmHWM, see there) + graph metadata
 *                  368·(2048 + 768·layers in the graph + 16·pairs in it) per cached graph (one
 *                  monolithic graph; or L + 2 small ones with checkpointing)
 * On a GPU, weights, lora, checkpoints and compute are device memory; staging and the runtime
 * are host memory, counted too (the estimate is compared with one budget). effectiveBatch costs
 * nothing: micro-batches accumulate into the same gradient buffers.
 */
import { ROUTE_CHUNK_MIB } from '../../contract/index.ts';
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

/**
 * The issue #11 memory target's model: Llama-3-8B in Q4_K_M (the real file is 4,920,734,496
 * bytes). The estimate test and `npm run bench:memory` both check it against 8 GB.
 */
export const LLAMA3_8B_Q4_K_M: ModelDims = {
  layers: 32,
  embd: 4096,
  ffn: 14336,
  heads: 32,
  kvHeads: 8,
  vocab: 128256,
  weightBytes: 4_920_734_496,
};

const MiB = 1024 * 1024;

/**
 * Resident memory of a training process beyond the trainer's own buffers: node, the addon and
 * its libraries, the JS heap. Calibrated from bench:memory's VmHWM on this machine's CPU
 * (docs/runs.md "Memory estimate"); the native doc's ~100-110 MiB for node + addon is the same.
 */
export const RUNTIME_BYTES = 110 * MiB;

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

/**
 * How the trainer lays a step out: with or without activation checkpointing, and the loss
 * chunk's rows when checkpointing (absent: lossChunkRows, what a run's job gets).
 */
export interface MemoryLayout {
  checkpointing: boolean;
  lossChunk?: number;
  /** Training on a GPU backend: the backward route's transient copies count (default false). */
  gpu?: boolean;
}

/** The GPU backward route's transient bytes (the `route` part above). */
export function routeBytes(
  cfg: Pick<MemoryConfig, 'sequenceLength' | 'microBatch'>,
  d: ModelDims,
): number {
  const widest = Math.max(d.embd, d.ffn);
  const whole = 8 * Math.max(d.vocab, d.ffn) * d.embd;
  return Math.min(whole, ROUTE_CHUNK_MIB * MiB) + 8 * widest * cfg.sequenceLength * cfg.microBatch;
}

/** The compute-graph figures of the model above (bytes), for one micro-batch. */
export function graphBytes(
  cfg: Pick<MemoryConfig, 'sequenceLength' | 'microBatch'>,
  d: ModelDims,
): { scores: number; acts: number; forward: number; layerBackward: number } {
  const T = cfg.sequenceLength;
  const B = cfg.microBatch;
  const S = 4 * T * T * d.heads * B;
  const A = 4 * T * B * (d.embd + d.ffn);
  return {
    scores: S,
    acts: A,
    forward: S + 1.7 * A,
    layerBackward: Math.max(S + 5.2 * A, 2 * S + 4.6 * A),
  };
}

/** The named parts of the memory model above, in bytes (default: without checkpointing). */
export function memoryParts(
  cfg: MemoryConfig,
  d: ModelDims,
  layout: MemoryLayout = { checkpointing: false },
): Record<string, number> {
  const T = cfg.sequenceLength;
  const B = cfg.microBatch;
  const rows = T * B;
  const g = graphBytes(cfg, d);
  const pairs = cfg.loraTargets.length * d.layers;
  const ckpt = layout.checkpointing;
  // lossChunk 0 = one chunk of all rows, as the trainer reads it.
  const chunk = layout.lossChunk ?? lossChunkRows(d, cfg.sequenceLength, B);
  const R = ckpt ? Math.min(rows, chunk || rows) : rows;
  const head = 12 * d.vocab * R + 4 * d.embd * rows;
  const compute = ckpt
    ? Math.max(g.forward, head, g.layerBackward)
    : 12 * d.vocab * R + d.layers * (g.scores + 4.4 * g.acts);
  const graphMeta = ckpt
    ? (d.layers + 2) * 368 * (2048 + 768 + 16 * cfg.loraTargets.length)
    : 368 * (2048 + 768 * d.layers + 16 * pairs);
  return {
    weights: d.weightBytes,
    lora: 16 * loraParameterCount(cfg, d) + 32 + 4 * Math.max(d.vocab, d.ffn),
    checkpoints: ckpt ? (d.layers + 3) * 4 * d.embd * rows : 0,
    compute,
    route: layout.gpu ? routeBytes(cfg, d) : 0,
    staging: 4 * d.vocab * R + 4 * T * T * B,
    overhead: RUNTIME_BYTES + graphMeta,
  };
}

export function estimateBytes(
  cfg: MemoryConfig,
  d: ModelDims,
  layout: MemoryLayout = { checkpointing: false },
): number {
  return Object.values(memoryParts(cfg, d, layout)).reduce((a, b) => a + b, 0);
}

/** Fewer rows per chunk than this leaves the output matmul too thin to run at speed. */
export const MIN_LOSS_CHUNK_ROWS = 16;

/**
 * Output rows per loss chunk when checkpointing. The head graph of one chunk plans
 * 12·V·C + 4·E·T·B bytes (logits, softmax, their gradients, the one-hot labels: docs/native.md);
 * the rule makes it no larger than the per-layer backward graph, which a checkpointed step has
 * to hold anyway, so the head never sets the peak: C = (layerBackward - 4·E·T·B) / (12·V),
 * clamped to 16..T. The earlier rule (64 MiB of F32 logits per chunk, 524 rows at a 32k vocab)
 * did not satisfy this: its head graph was 12 x 64 MiB = 768 MiB against a per-layer backward
 * of 55-200 MiB on the benchmark model, so the head dominated the checkpointed peak
 * (measured: 191.5 MiB at C = 512 vs 55.1 MiB for a layer). The rule gives 181 rows there
 * (bench model, T 512), 134-363 on bench:memory's sizes, and ~390 rows for a Llama-3-8B shape
 * at sequence 1024 (128k vocab): still hundreds of rows per chunk's matmul.
 */
export function lossChunkRows(d: ModelDims, seqLen: number, microBatch = 1): number {
  const g = graphBytes({ sequenceLength: seqLen, microBatch }, d);
  const rows = Math.floor(
    (g.layerBackward - 4 * d.embd * seqLen * microBatch) / (12 * Math.max(1, d.vocab)),
  );
  return Math.max(MIN_LOSS_CHUNK_ROWS, Math.min(seqLen, rows));
}

/**
 * Activation checkpointing for a run: 'on' / 'off' as given; 'auto' = on when the estimate
 * without it (the monolithic graph) does not fit (more than FIT_SHARE of the device's free
 * memory), else off (it costs one more forward pass per layer and step: about -26..-28% tokens/s on
 * the CPU, docs/native.md).
 */
export function resolveCheckpointing(
  choice: RunConfig['checkpointing'],
  cfg: MemoryConfig,
  d: ModelDims,
  freeBytes: number,
  gpu = false,
): boolean {
  if (choice !== 'auto') return choice === 'on';
  return estimateBytes(cfg, d, { checkpointing: false, gpu }) > FIT_SHARE * freeBytes;
}

/** Whether a device trains on a GPU backend (its backend named and not the CPU). */
export function isGpuDevice(device: { backend?: string }): boolean {
  return device.backend !== undefined && device.backend !== 'cpu';
}

/** Under 80% of free memory fits; up to 95% is tight (other apps may push it over); above will not fit. */
export const FIT_SHARE = 0.8;
export const TIGHT_SHARE = 0.95;

/**
 * The run's memory estimate against the device's free memory. Checkpointing is resolved from the
 * config's choice as the run's job resolves it (resolveCheckpointing; no choice: off), the loss
 * chunk is the job's (lossChunkRows); `checkpointing` in the result says which layout was assumed.
 */
export function memoryEstimate(
  cfg: MemoryConfig & Partial<Pick<RunConfig, 'checkpointing'>>,
  d: ModelDims,
  device: { name: string; freeBytes: number; backend?: string },
): MemoryEstimate {
  const gpu = isGpuDevice(device);
  const checkpointing = resolveCheckpointing(
    cfg.checkpointing ?? 'off',
    cfg,
    d,
    device.freeBytes,
    gpu,
  );
  const layout: MemoryLayout = { checkpointing, gpu };
  const parts = memoryParts(cfg, d, layout);
  const totalBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  const share = device.freeBytes > 0 ? totalBytes / device.freeBytes : Infinity;
  const verdict = share <= FIT_SHARE ? 'fits' : share <= TIGHT_SHARE ? 'tight' : 'will-not-fit';
  const advice: string[] = [];
  if (verdict !== 'fits') {
    const target = device.freeBytes * FIT_SHARE;
    const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;
    if (!checkpointing) {
      const on = estimateBytes(cfg, d, { checkpointing: true, gpu });
      advice.push(
        `Turn activation checkpointing on (or 'auto'): about ${gib(on)} (one more forward pass per step, about 30% slower on the CPU).`,
      );
    }
    let seq = cfg.sequenceLength;
    while (seq > 64 && estimateBytes({ ...cfg, sequenceLength: seq }, d, layout) > target)
      seq = Math.floor(seq / 2);
    if (seq < cfg.sequenceLength) {
      advice.push(
        `Shorten the sequence length to ${seq} tokens: about ${gib(estimateBytes({ ...cfg, sequenceLength: seq }, d, layout))}.`,
      );
    }
    if (cfg.loraRank > 8) {
      advice.push(
        `Lower the LoRA rank to 8: about ${gib(estimateBytes({ ...cfg, loraRank: 8 }, d, layout))} (the adapter is a small share; sequence length matters more).`,
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
    checkpointing,
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
