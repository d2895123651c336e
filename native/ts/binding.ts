// Typed binding of the native trainer (native/build/Release/overnight_native.node).
// Nothing else in the project loads the raw addon. Long calls return Promises and run off the JS
// thread; failures reject with NativeError (code = E_ARCH, E_TYPE, E_CONFIG, E_INPUT, E_OOM,
// E_CANCELLED, E_CHECKPOINT, ...). The addon holds llama.cpp/ggml: load it only in the training
// child process (core/training/worker.ts), never beside node-llama-cpp in the engine process.
import { createRequire } from 'node:module';
import { existsSync, renameSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TokenWindow } from './token-data.ts';
import { loraTargets, type LoraTarget } from '../../contract/runs.ts';
import { mergeTypes, type MergeType as ContractMergeType } from '../../contract/export.ts';

/** The LoRA target names: the contract's list (contract/runs.ts), the one place it is written. */
export const LORA_TARGETS = loraTargets;
export type LoraTargetName = LoraTarget;

export class NativeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NativeError';
  }
}

/**
 * Every training value is required: the binding and the addon hold no defaults. The contract
 * does (contract/runs.ts runConfigDefaults / optimizerDefaults); callers pass them explicitly.
 */
export interface OpenOptions {
  modelPath: string;
  targets: readonly LoraTargetName[];
  rank: number;
  alpha: number;
  seed: number;
  seqLen: number;
  /** 0 = the hardware's thread count. */
  threads: number;
  /**
   * Layers on the GPU as the trainer takes them (>= 0; 999 = all): a run config's -1 becomes
   * 999 through contract/runs.ts trainerGpuLayers. Ignored by the CPU addon.
   */
  gpuLayers: number;
  /**
   * How the input gradient of a product with a frozen weight is built (native/src/trainer.cpp,
   * ov_route_backward): 'auto' = dequantize + mul_mat where the weight lives on a GPU, OUT_PROD
   * on the CPU; 'dequant' / 'outprod' force one route everywhere (tests, benchmarks).
   */
  backwardRoute: BackwardRoute;
  /**
   * Where that route runs (a GPU), a weight is split into row blocks whose transient F32 copies
   * (dequantized rows + their transpose, 8 bytes per element) stay within this many MiB, so a
   * vocabulary-sized output projection never exists whole in F32 (0 = never split). Runs use
   * ROUTE_CHUNK_MIB (contract/runs.ts), which the memory estimate counts on a GPU.
   */
  routeChunkMiB: number;
  /**
   * Activation checkpointing (docs/native.md "Memory"): false = one graph per micro-batch with
   * every layer's activations alive (fastest when it fits); true = keep each layer's input,
   * recompute one layer at a time in the backward pass (about one extra forward pass).
   */
  checkpointing: boolean;
  /**
   * Output rows per loss-head chunk when checkpointing (>= 0; 0 = the whole micro-batch's rows in
   * one chunk): the vocabulary-sized buffers hold lossChunk rows instead of every trained row.
   * Without checkpointing the head stays in the one graph and this value is not used.
   */
  lossChunk: number;
  /** Windows evaluated together in one graph (>= 1); a step's windows go in groups of this many. */
  microBatch: number;
  /** Which addon (ggml build) trains: default OVERNIGHT_TRAINER_BACKEND, else 'cpu'. */
  backend?: TrainerBackend;
}
export type BackwardRoute = 'auto' | 'dequant' | 'outprod';
const BACKWARD_ROUTES: Record<BackwardRoute, number> = { auto: 0, dequant: 1, outprod: 2 };

export interface ModelInfo {
  arch: string;
  desc: string;
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
  nCtxTrain: number;
  nLoraParams: number;
  backend: string;
  weightTypes: string[];
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /**
   * Clip the step's gradient by its global L2 norm (over every A and B): when the norm exceeds
   * clipNorm, AdamW sees the gradient scaled by clipNorm / (norm + 1e-6). 0 = off.
   */
  clipNorm: number;
}

export interface StepResult {
  /** Mean loss per trained token over the optimizer step. */
  loss: number;
  nTrained: number;
  ms: number;
  /** Global L2 norm of the step's averaged gradient over every A and B, before clipping. */
  gradNorm: number;
}

export interface ProbeOptions {
  prompt: Int32Array;
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  seed: number;
}

/** The trainer's own buffers on one device (bytes). */
export interface MemoryEntry {
  /** 'CPU' or the ggml device name, e.g. 'Vulkan0', 'CUDA0'. */
  device: string;
  /** Model weights loaded there. */
  weights: number;
  /** LoRA A/B, gradient accumulators and AdamW moments. */
  lora: number;
  /** The scheduler's compute buffer (sized for the largest graph planned so far). */
  compute: number;
  /** Checkpointing: every layer's input and the two layer-gradient buffers (0 without). */
  checkpoint: number;
}

/** Where the full-length training graph runs (forward + backward + accumulation). */
export interface Placement {
  /** Backend name (e.g. 'CPU', 'Vulkan0') -> compute nodes assigned to it. */
  nodes: Record<string, number>;
  /** Ops on the CPU while a GPU backend is in use, grouped by op (with source types) and reason. */
  cpuOps: { op: string; reason: string; count: number }[];
  nNodes: number;
  nSplits: number;
  /** Input gradients built by the dequantize + mul_mat route instead of OUT_PROD. */
  nRouted: number;
}

export type TensorKind = 'a' | 'b' | 'grad_a' | 'grad_b' | 'm_a' | 'v_a' | 'm_b' | 'v_b';

interface RawTrainer {
  open(o: object): Promise<ModelInfo>;
  step(w: TokenWindow[], o: object): Promise<StepResult>;
  grad(w: TokenWindow): Promise<StepResult>;
  evaluate(w: TokenWindow[]): Promise<{ lossSum: number; nTrained: number }>;
  referenceLoss(w: TokenWindow): Promise<{ lossSum: number; nTrained: number }>;
  loras(): { name: string; dIn: number; dOut: number }[];
  getTensor(name: string, kind: string): Float32Array;
  setTensor(name: string, kind: string, d: Float32Array): void;
  getState(): { state: Buffer; adamT: number };
  setState(b: Buffer, adamT: number): void;
  saveAdapter(path: string, kv: Record<string, string>): Promise<void>;
  probe(o: object): Promise<{ tokens: Int32Array; text: string }>;
  tokenize(text: string, addSpecial: boolean): Int32Array;
  detokenize(t: Int32Array): string;
  cancel(on?: boolean): void;
  deviceMemory(): { used: number; total: number };
  memory(): MemoryEntry[];
  placement(): Placement;
  close(): void;
}
interface RawAddon {
  Trainer: new () => RawTrainer;
  benchMatmul(n: number, threads: number, reps: number, kind: number): Promise<number>;
  peakRss(): number;
  mergeAdapter(
    o: MergeOptions,
    onProgress: (p: MergeProgress) => void,
  ): { promise: Promise<MergeResult>; cancel: () => void };
}

/**
 * One addon per ggml backend, built side by side by native/scripts/build.mjs: the CPU addon in
 * native/build (what `npm install` builds), a GPU one in native/build-<backend> (opt-in, e.g.
 * `npm run build:native:vulkan`). Each GPU addon also holds the CPU backend.
 */
export const TRAINER_BACKENDS = ['cpu', 'vulkan', 'cuda', 'metal'] as const;
export type TrainerBackend = (typeof TRAINER_BACKENDS)[number];

export function addonPath(backend: TrainerBackend = 'cpu'): string {
  const dir = backend === 'cpu' ? 'build' : `build-${backend}`;
  return join(
    dirname(fileURLToPath(import.meta.url)),
    '..',
    dir,
    'Release',
    'overnight_native.node',
  );
}
export const ADDON_PATH = addonPath('cpu');

/** Whether the addon for this backend has been built (no loading). */
export function addonBuilt(backend: TrainerBackend): boolean {
  return existsSync(addonPath(backend));
}

/** The backend used when OpenOptions.backend is not given: OVERNIGHT_TRAINER_BACKEND, else cpu. */
export function defaultBackend(): TrainerBackend {
  const env = process.env.OVERNIGHT_TRAINER_BACKEND;
  if (env === undefined || env === '') return 'cpu';
  if (!(TRAINER_BACKENDS as readonly string[]).includes(env)) {
    throw new NativeError(
      'E_CONFIG',
      `OVERNIGHT_TRAINER_BACKEND=${env}: expected one of ${TRAINER_BACKENDS.join(', ')}`,
    );
  }
  return env as TrainerBackend;
}

const addons = new Map<TrainerBackend, RawAddon>();
export function loadAddon(backend: TrainerBackend = defaultBackend()): RawAddon {
  const loaded = addons.get(backend);
  if (loaded) return loaded;
  const path = addonPath(backend);
  if (!existsSync(path)) {
    const how =
      backend === 'cpu'
        ? 'npm run build:native'
        : `npm run build:native:${backend} (or OVERNIGHT_GPU=${backend} npm run build:native)`;
    throw new NativeError(
      'E_NO_ADDON',
      `native trainer (${backend}) not built: ${path} is missing (run ${how})`,
    );
  }
  const require = createRequire(import.meta.url);
  const a = require(path) as RawAddon;
  addons.set(backend, a);
  return a;
}

function wrap(e: unknown): NativeError {
  if (e instanceof NativeError) return e;
  const err = e as { code?: string; message?: string };
  return new NativeError(err.code ?? 'E_NATIVE', err.message ?? String(e));
}

async function call<T>(p: () => Promise<T>): Promise<T> {
  try {
    return await p();
  } catch (e) {
    throw wrap(e);
  }
}
function sync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw wrap(e);
  }
}

export class Trainer {
  private raw: RawTrainer;
  info!: ModelInfo;
  readonly options: Required<Omit<OpenOptions, 'targets'>> & { targets: LoraTargetName[] };

  private constructor(o: OpenOptions) {
    if (!Array.isArray(o.targets)) {
      throw new NativeError('E_CONFIG', 'targets is required (an array of LoRA target names)');
    }
    const backend = o.backend ?? defaultBackend();
    if (!(TRAINER_BACKENDS as readonly string[]).includes(backend)) {
      throw new NativeError(
        'E_CONFIG',
        `backend must be one of ${TRAINER_BACKENDS.join(', ')} (got ${String(backend)})`,
      );
    }
    this.raw = new (loadAddon(backend).Trainer)();
    this.options = {
      modelPath: o.modelPath,
      targets: [...o.targets],
      rank: o.rank,
      alpha: o.alpha,
      seed: o.seed,
      seqLen: o.seqLen,
      threads: o.threads,
      gpuLayers: o.gpuLayers,
      backwardRoute: o.backwardRoute,
      routeChunkMiB: o.routeChunkMiB,
      checkpointing: o.checkpointing,
      lossChunk: o.lossChunk,
      microBatch: o.microBatch,
      backend,
    };
  }

  /** Loads the model, validates it and the LoRA config, builds the training graph. */
  static async open(o: OpenOptions): Promise<Trainer> {
    const t = new Trainer(o);
    const opt = t.options;
    for (const tg of opt.targets) {
      if (!(LORA_TARGETS as readonly string[]).includes(tg)) {
        throw new NativeError(
          'E_CONFIG',
          `unknown LoRA target '${tg}' (known: ${LORA_TARGETS.join(', ')})`,
        );
      }
    }
    for (const k of ['rank', 'seqLen', 'seed', 'threads', 'gpuLayers', 'routeChunkMiB'] as const) {
      if (!Number.isInteger(opt[k]) || opt[k] < 0) {
        throw new NativeError('E_CONFIG', `${k} must be a non-negative integer (got ${opt[k]})`);
      }
    }
    if (typeof opt.checkpointing !== 'boolean') {
      throw new NativeError(
        'E_CONFIG',
        `checkpointing must be true or false (got ${String(opt.checkpointing)})`,
      );
    }
    if (!Number.isInteger(opt.lossChunk) || opt.lossChunk < 0) {
      throw new NativeError(
        'E_CONFIG',
        `lossChunk must be a non-negative integer number of output rows per loss chunk, 0 = one chunk (got ${String(opt.lossChunk)})`,
      );
    }
    if (!Number.isInteger(opt.microBatch) || opt.microBatch < 1 || opt.microBatch > 1024) {
      throw new NativeError(
        'E_CONFIG',
        `microBatch must be an integer number of windows per graph in [1, 1024] (got ${String(opt.microBatch)})`,
      );
    }
    if (typeof opt.alpha !== 'number' || !(opt.alpha > 0)) {
      throw new NativeError('E_CONFIG', `alpha must be a number > 0 (got ${opt.alpha})`);
    }
    if (opt.seed > 2 ** 53) throw new NativeError('E_CONFIG', 'seed is too large');
    const route = BACKWARD_ROUTES[opt.backwardRoute];
    if (route === undefined) {
      throw new NativeError(
        'E_CONFIG',
        `backwardRoute must be one of ${Object.keys(BACKWARD_ROUTES).join(', ')} (got ${String(opt.backwardRoute)})`,
      );
    }
    t.info = await call(() => t.raw.open({ ...opt, backwardRoute: route }));
    return t;
  }

  step(windows: TokenWindow[], adamw: AdamWOptions): Promise<StepResult> {
    return call(() => this.raw.step(windows, adamw));
  }
  /** Zeroes the gradient accumulators and computes d(mean loss)/d(A, B) for one window (no update). */
  grad(window: TokenWindow): Promise<StepResult> {
    return call(() => this.raw.grad(window));
  }
  /** Forward only: summed loss over the trained tokens of the windows. */
  evaluate(windows: TokenWindow[]): Promise<{ lossSum: number; nTrained: number }> {
    return call(() => this.raw.evaluate(windows));
  }
  /** The same summed loss from llama.cpp's own inference graph (base model, no adapter). */
  referenceLoss(window: TokenWindow): Promise<{ lossSum: number; nTrained: number }> {
    return call(() => this.raw.referenceLoss(window));
  }
  loras(): { name: string; dIn: number; dOut: number }[] {
    return sync(() => this.raw.loras());
  }
  getTensor(name: string, kind: TensorKind): Float32Array {
    return sync(() => this.raw.getTensor(name, kind));
  }
  setTensor(name: string, kind: TensorKind, data: Float32Array): void {
    sync(() => this.raw.setTensor(name, kind, data));
  }
  getState(): { state: Buffer; adamT: number } {
    return sync(() => this.raw.getState());
  }
  setState(state: Buffer, adamT: number): void {
    sync(() => this.raw.setState(state, adamT));
  }
  /** Writes the adapter GGUF atomically (temp file + rename). */
  async saveAdapter(path: string, metadata: Record<string, string> = {}): Promise<void> {
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      await call(() => this.raw.saveAdapter(tmp, metadata));
      renameSync(tmp, path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        /* not written */
      }
      throw wrap(e);
    }
  }
  /** Generates with the adapter file at adapterPath (or the base model when null). */
  probe(
    o: ProbeOptions,
    adapterPath: string | null,
  ): Promise<{ tokens: Int32Array; text: string }> {
    return call(() => this.raw.probe({ ...o, adapterPath: adapterPath ?? undefined }));
  }
  tokenize(text: string, addSpecial = false): Int32Array {
    return sync(() => this.raw.tokenize(text, addSpecial));
  }
  detokenize(tokens: Int32Array): string {
    return sync(() => this.raw.detokenize(tokens));
  }
  /** Safe while a step runs: the step rejects with E_CANCELLED within one micro-batch. */
  cancel(on = true): void {
    this.raw.cancel(on);
  }
  deviceMemory(): { used: number; total: number } | null {
    const m = this.raw.deviceMemory();
    return m.total < 0 ? null : m;
  }
  /** The trainer's own buffers per device ([] while an operation runs). */
  memory(): MemoryEntry[] {
    return this.raw.memory();
  }
  /** Plans the full-length training graph and reports where its nodes run. */
  placement(): Placement {
    return sync(() => this.raw.placement());
  }
  close(): void {
    sync(() => this.raw.close());
  }
}

/**
 * The ggml CPU kernels a LoRA step on a 4-bit base spends its time in: `f32` = mul_mat F32 x F32
 * (attention, LoRA), `q4_0` = mul_mat of a Q4_0 weight (the forward), `out_prod_q4_0` = OUT_PROD of
 * a Q4_0 weight and a transposed F32 gradient (the input gradient through the frozen base).
 */
export const MATMUL_KERNELS = ['f32', 'q4_0', 'out_prod_q4_0'] as const;
export type MatmulKernel = (typeof MATMUL_KERNELS)[number];

/** Throughput of one ggml CPU kernel on an n x n x n product on this machine (GFLOP/s, best of reps). */
export function benchMatmul(
  n = 1024,
  threads = 0,
  reps = 5,
  kernel: MatmulKernel = 'f32',
): Promise<number> {
  return call(() => loadAddon().benchMatmul(n, threads, reps, MATMUL_KERNELS.indexOf(kernel)));
}

/** Peak resident set size of this process (bytes). */
export function peakRss(): number {
  return loadAddon().peakRss();
}

// ---- merging an adapter into its base (native/src/merge.cpp; docs/native.md "Merging") ----

/** Output types of a merge: F16 is written by the merge itself, the others by llama_model_quantize. */
export const MERGE_TYPES = mergeTypes;
export type MergeType = ContractMergeType;

/** Every field is required: the binding and the addon hold no defaults. */
export interface MergeOptions {
  /** The base model GGUF the adapter was trained on. */
  basePath: string;
  /** A GGUF LoRA adapter ("<tensor>.lora_a" / ".lora_b", adapter.lora.alpha). */
  adapterPath: string;
  /** The final file; written as `<outPath>.partial` (and `<outPath>.f16.partial`), then renamed. */
  outPath: string;
  /** Adapter strength: the delta is scale * (alpha / rank) * B·A (1 = as trained). */
  scale: number;
  type: MergeType;
  /** 0 = every core. */
  threads: number;
  /** Refuse with E_DISK_FULL before writing when the output folder lacks the space needed. */
  checkSpace: boolean;
  /** Replace an existing outPath (else E_EXISTS). */
  overwrite: boolean;
}
export interface MergeProgress {
  /** 'merge': tensors written to the F16 file; 'quantize': tensors through llama_model_quantize. */
  phase: 'merge' | 'quantize';
  done: number;
  total: number;
}
export interface MergeResult {
  outPath: string;
  type: MergeType;
  nTensors: number;
  /** Tensors that received the adapter's delta (stored F16, then quantized for other types). */
  nMerged: number;
  /** Tensors copied byte for byte from the base. */
  nCopied: number;
  rank: number;
  alpha: number;
  /** Size of the final file. */
  bytes: number;
  /** The disk-space pre-check's estimate of the peak use (intermediate + final, with margin). */
  neededBytes: number;
  ms: number;
}
export interface MergeJob {
  promise: Promise<MergeResult>;
  /** Safe at any time: the merge rejects with E_CANCELLED within one tensor, removing its partials. */
  cancel(): void;
}

function mergeOptionError(field: string, expected: string, got: unknown): NativeError {
  return new NativeError(
    'E_INPUT',
    `mergeAdapter: ${field} must be ${expected} (got ${JSON.stringify(got) ?? String(got)})`,
  );
}

/**
 * Merges the adapter into the base and writes outPath at the given type. onProgress runs on
 * this thread, and the merge waits for it to return (cancel() from inside it stops the merge
 * before the next tensor). Loads the CPU addon: call it in a child process, never beside
 * node-llama-cpp (core/export runs it in its own worker).
 */
export function mergeAdapter(o: MergeOptions, onProgress: (p: MergeProgress) => void): MergeJob {
  if (typeof o !== 'object' || o === null) throw mergeOptionError('options', 'an object', o);
  for (const k of ['basePath', 'adapterPath', 'outPath'] as const) {
    if (typeof o[k] !== 'string' || o[k] === '')
      throw mergeOptionError(k, 'a non-empty path', o[k]);
  }
  for (const k of ['basePath', 'adapterPath'] as const) {
    if (!existsSync(o[k]))
      throw new NativeError('E_INPUT', `mergeAdapter: ${k} ${o[k]} does not exist`);
  }
  if (!(MERGE_TYPES as readonly string[]).includes(o.type)) {
    throw mergeOptionError('type', `one of ${MERGE_TYPES.join(', ')}`, o.type);
  }
  if (typeof o.scale !== 'number' || !Number.isFinite(o.scale)) {
    throw mergeOptionError('scale', 'a finite number', o.scale);
  }
  if (!Number.isInteger(o.threads) || o.threads < 0) {
    throw mergeOptionError('threads', 'an integer >= 0 (0 = every core)', o.threads);
  }
  for (const k of ['checkSpace', 'overwrite'] as const) {
    if (typeof o[k] !== 'boolean') throw mergeOptionError(k, 'a boolean', o[k]);
  }
  if (typeof onProgress !== 'function')
    throw mergeOptionError('onProgress', 'a function', onProgress);
  const raw = sync(() =>
    loadAddon('cpu').mergeAdapter(
      {
        basePath: o.basePath,
        adapterPath: o.adapterPath,
        outPath: o.outPath,
        scale: o.scale,
        type: o.type,
        threads: o.threads,
        checkSpace: o.checkSpace,
        overwrite: o.overwrite,
      },
      onProgress,
    ),
  );
  return { promise: call(() => raw.promise), cancel: () => raw.cancel() };
}
