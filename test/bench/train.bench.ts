// npm run bench:train — LoRA training throughput of the native trainer on a fixed generated model:
// llama architecture, 1024 embedding, 8 layers, 2816 FFN, 16 heads, the 32k llama (SPM) vocab;
// Q4_0 and Q4_K bases; sequence 512; rank 16 on all 7 targets; one window per micro-batch.
// Prints tokens/s, ms per step, peak RSS and achieved GFLOP/s against ggml's own matmul peak
// (the fastest of its F32 mul_mat, Q4_0 mul_mat and Q4_0 OUT_PROD kernels) measured in the same run; then the packing measurement (several short samples per window
// versus one sample per window) in trained tokens per second.
//
// Options (environment): BENCH_STEPS (default 3 timed steps after 1 warm-up), BENCH_THREADS
// or `--threads N` (default: the physical cores, what a run's threads: 0 uses), BENCH_TYPES (default "q4_0,q4_k" on the CPU, "f16,q8_0,q4_0,q4_k" on a
// GPU), BENCH_PACKING=0 to skip packing, BENCH_ROUTE=auto|dequant|outprod (the backward route
// through frozen weights, native/src/trainer.cpp ov_route_backward), BENCH_SMALL=1 for a 256-emb,
// 2-layer model at sequence 128 (software Vulkan is ~30x slower than the CPU).
// BENCH_LAYOUTS (default "mono"): the trainer's memory layouts to compare (issue #11), comma-
// separated `mono|ckpt[:lossChunk[:microBatch]]`, e.g. "mono,ckpt:64,ckpt:64:2,ckpt:64:4"; each
// row runs in a fresh child process (so its peak RSS is its own) and each step trains microBatch
// windows (one graph evaluation per step). BENCH_INTERLEAVE=1 times the layouts round-robin in
// one process instead (the same load for each; each child then only measures memory).
// Backend: `npm run bench:train -- --backend vulkan|cuda|metal|cpu` (default cpu) loads that
// addon (npm run build:native:<backend>); every layer goes to the GPU. Each row then also shows
// the training-graph nodes on the CPU backend (placement report) and the peak of the trainer's
// own buffers on the GPU (weights + LoRA/optimizer + compute; on the CPU backend: in host memory).
import { physicalCores } from '../../core/system/cpu.ts';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  MATMUL_KERNELS,
  TRAINER_BACKENDS,
  Trainer,
  benchMatmul,
  peakRss,
} from '../../native/ts/binding.ts';
import { adamw, openOptions } from '../native/helpers.ts';
import type { BackwardRoute, OpenOptions, TrainerBackend } from '../../native/ts/binding.ts';
import { buildWindows } from '../../native/ts/token-data.ts';
import type { Sample, TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import type { TinyModelType } from '../fixtures/tiny-model.ts';

const backendArg = process.argv.indexOf('--backend');
const BACKEND = (backendArg > 0 ? process.argv[backendArg + 1] : 'cpu') as TrainerBackend;
if (!(TRAINER_BACKENDS as readonly string[]).includes(BACKEND)) {
  throw new Error(`--backend must be one of ${TRAINER_BACKENDS.join(', ')}`);
}
const SMALL = process.env.BENCH_SMALL === '1';
const SEQ = SMALL ? 128 : 512;
const RANK = 16;
const STEPS = Number(process.env.BENCH_STEPS ?? 3);
const threadsArg = process.argv.indexOf('--threads');
const THREADS = Number(
  threadsArg > 0 ? process.argv[threadsArg + 1] : (process.env.BENCH_THREADS ?? physicalCores()),
);
if (!Number.isInteger(THREADS) || THREADS < 1)
  throw new Error(`--threads / BENCH_THREADS must be a whole number >= 1 (got ${THREADS})`);
const ROUTE = (process.env.BENCH_ROUTE ?? 'auto') as BackwardRoute;
const TYPES = (
  process.env.BENCH_TYPES ?? (BACKEND === 'cpu' ? 'q4_0,q4_k' : 'f16,q8_0,q4_0,q4_k')
).split(',') as TinyModelType[];
const MODEL = {
  arch: 'llama',
  vocab: 'llama-spm',
  nEmbd: SMALL ? 256 : 1024,
  nLayer: SMALL ? 2 : 8,
  nFf: SMALL ? 768 : 2816,
  nHead: SMALL ? 4 : 16,
  nHeadKv: SMALL ? 4 : 16,
  nCtx: 2048,
  name: SMALL ? 'overnight-bench-small' : 'overnight-bench',
} as const;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomWindow(r: () => number, nVocab: number): TokenWindow {
  const tokens = new Int32Array(SEQ);
  for (let i = 0; i < SEQ; i++) tokens[i] = 3 + Math.floor(r() * (nVocab - 3));
  const labels = new Int32Array(SEQ).fill(-1);
  for (let i = 0; i < SEQ - 1; i++) labels[i] = tokens[i + 1]!;
  return { tokens, labels };
}

/**
 * Training FLOPs per window token: the frozen base needs forward (2·W) and the input gradient
 * (2·W) of every matmul, no weight gradient; LoRA pairs need forward, input and weight gradients
 * (3 × 2·r·(d_in + d_out)); attention (full T×T scores as the graph computes them) forward 4·T·E
 * per layer and backward twice that.
 */
function flopsPerToken(): number {
  const { nEmbd: E, nLayer: L, nFf: F } = MODEL;
  const V = 32000;
  const linear = L * (4 * E * E + 3 * E * F);
  const lora = L * RANK * (4 * (E + E) + 2 * (E + F) + (F + E));
  const attn = L * 4 * SEQ * E;
  return 4 * (linear + E * V) + 6 * lora + 3 * attn;
}

function fmt(n: number, d = 1): string {
  return n.toFixed(d);
}

/**
 * A memory layout of the trainer (issue #11): `mono` or `ckpt` (activation checkpointing), then
 * optionally `:lossChunk` and `:microBatch`, e.g. `ckpt:64:4`.
 */
interface Layout {
  name: string;
  checkpointing: boolean;
  lossChunk: number;
  microBatch: number;
}
function parseLayout(name: string): Layout {
  const [kind, chunk = '0', mb = '1'] = name.split(':');
  if (
    (kind !== 'mono' && kind !== 'ckpt') ||
    !/^\d+$/.test(chunk) ||
    !/^\d+$/.test(mb) ||
    mb === '0'
  ) {
    throw new Error(`BENCH_LAYOUTS: '${name}' is not mono|ckpt[:lossChunk[:microBatch]]`);
  }
  return { name, checkpointing: kind === 'ckpt', lossChunk: Number(chunk), microBatch: Number(mb) };
}
const LAYOUTS = (process.env.BENCH_LAYOUTS ?? 'mono').split(',').map(parseLayout);
// BENCH_INTERLEAVE=1: time the layouts round-robin in one process (fair under a varying load);
// the child processes then only measure memory (one step each)
const INTERLEAVE = process.env.BENCH_INTERLEAVE === '1';

interface Row {
  type: string;
  layout: string;
  weights: string;
  tps: number;
  msPerWindow: number;
  peakRssMiB: number;
  trainerMiB: number;
  computeMiB: number;
  checkpointMiB: number;
  cpuNodes: string;
  routed: number;
}

/** The trainer's options for the bench model file in one layout. */
function layoutOptions(modelPath: string, layout: Layout): OpenOptions {
  return openOptions({
    modelPath,
    seqLen: SEQ,
    rank: RANK,
    alpha: 2 * RANK,
    threads: THREADS,
    backend: BACKEND,
    backwardRoute: ROUTE,
    checkpointing: layout.checkpointing,
    lossChunk: layout.lossChunk,
    microBatch: layout.microBatch,
  });
}

/** One base type and layout, in this process (BENCH_CHILD): warm-up + STEPS timed steps. */
async function measure(type: TinyModelType, layout: Layout): Promise<Row> {
  const m = await tinyModel({ ...MODEL, type });
  const tr = await Trainer.open(layoutOptions(m.path, layout));
  if (BACKEND !== 'cpu' && !tr.info.backend.toLowerCase().includes(BACKEND)) {
    console.error(
      `  ${type}: WARNING: no ${BACKEND} device (backends: ${tr.info.backend}); this row trained on the CPU` +
        (BACKEND === 'vulkan' ? ' (software Vulkan: GGML_VK_VISIBLE_DEVICES=0)' : ''),
    );
  }
  const pl = tr.placement();
  const cpuNodes = pl.cpuOps.reduce((n, o) => n + o.count, 0);
  for (const o of pl.cpuOps)
    console.error(`  ${type}: on the CPU: ${o.count} x ${o.op}: ${o.reason}`);
  const own = () => {
    const es = tr.memory().filter((e) => BACKEND === 'cpu' || e.device !== 'CPU');
    return {
      all: es.reduce((n, e) => n + e.weights + e.lora + e.compute + e.checkpoint, 0),
      compute: es.reduce((n, e) => n + e.compute, 0),
      checkpoint: es.reduce((n, e) => n + e.checkpoint, 0),
    };
  };
  const r = rng(1);
  // every step trains microBatch windows: one graph evaluation per step
  const batch = () =>
    Array.from({ length: layout.microBatch }, () => randomWindow(r, tr.info.nVocab));
  await tr.step(batch(), adamw({ lr: 1e-4, clipNorm: 0 })); // warm-up
  let peak = own();
  // the fastest step: on a shared machine the load only ever slows a step down
  let ms = Infinity;
  for (let i = 0; i < STEPS; i++) {
    ms = Math.min(ms, (await tr.step(batch(), adamw({ lr: 1e-4, clipNorm: 0 }))).ms);
    const o = own();
    if (o.all > peak.all) peak = o;
  }
  const msPerWindow = ms / layout.microBatch;
  const row: Row = {
    type,
    layout: layout.name,
    weights: tr.info.weightTypes.join('+'),
    tps: SEQ / (msPerWindow / 1000),
    msPerWindow,
    peakRssMiB: peakRss() / 2 ** 20,
    trainerMiB: peak.all / 2 ** 20,
    computeMiB: peak.compute / 2 ** 20,
    checkpointMiB: peak.checkpoint / 2 ** 20,
    cpuNodes: BACKEND === 'cpu' ? '-' : String(cpuNodes),
    routed: pl.nRouted,
  };
  tr.close();
  return row;
}

/** Runs measure() in a fresh process, so that its peak RSS (VmHWM) is this layout's alone. */
function child(type: TinyModelType, layout: Layout): Row {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    {
      env: {
        ...process.env,
        BENCH_CHILD: JSON.stringify({ type, layout: layout.name }),
        ...(INTERLEAVE ? { BENCH_STEPS: '0' } : {}),
      },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 26,
    },
  );
  const line = r.stdout.split('\n').find((l) => l.startsWith('BENCH_ROW '));
  if (r.status !== 0 || !line) {
    throw new Error(
      `bench child ${type} ${layout.name} failed (status ${r.status}): ${r.stdout.slice(-2000)}`,
    );
  }
  return JSON.parse(line.slice('BENCH_ROW '.length)) as Row;
}

/**
 * Tokens/s of every layout under the same load: all trainers open in this process, one step of
 * each in turn per round (warm-up round first), the fastest step per layout. On a machine shared
 * with other work this compares layouts fairly; their memory is measured apart (child()).
 */
async function interleaved(type: TinyModelType): Promise<Map<string, number>> {
  const m = await tinyModel({ ...MODEL, type });
  const trs: { layout: Layout; tr: Trainer; r: () => number; best: number }[] = [];
  for (const layout of LAYOUTS) {
    const tr = await Trainer.open(layoutOptions(m.path, layout));
    trs.push({ layout, tr, r: rng(1), best: Infinity });
  }
  for (let round = 0; round <= STEPS; round++) {
    for (const x of trs) {
      const batch = Array.from({ length: x.layout.microBatch }, () =>
        randomWindow(x.r, x.tr.info.nVocab),
      );
      const ms = (await x.tr.step(batch, adamw({ lr: 1e-4, clipNorm: 0 }))).ms;
      if (round > 0) x.best = Math.min(x.best, ms / x.layout.microBatch);
    }
  }
  const out = new Map<string, number>();
  for (const x of trs) {
    out.set(x.layout.name, x.best);
    x.tr.close();
  }
  return out;
}

async function main(): Promise<void> {
  const childSpec = process.env.BENCH_CHILD;
  if (childSpec) {
    const { type, layout } = JSON.parse(childSpec) as { type: TinyModelType; layout: string };
    console.log('BENCH_ROW ' + JSON.stringify(await measure(type, parseLayout(layout))));
    return;
  }
  console.log(
    `bench:train — backend ${BACKEND}, llama ${MODEL.nEmbd} emb, ${MODEL.nLayer} layers, ${MODEL.nFf} FFN, 32k vocab, seq ${SEQ}, rank ${RANK} x 7 targets, ${THREADS} threads, ${STEPS} timed steps of microBatch windows, backward route ${ROUTE}, layouts ${LAYOUTS.map((l) => l.name).join(', ')}`,
  );
  // The peak is the fastest of the ggml CPU kernels a step spends its time in, each measured on a
  // 1024^3 product in this run (F32 mul_mat, Q4_0 mul_mat, Q4_0 OUT_PROD).
  const kernels: string[] = [];
  let peak = 0;
  for (const k of MATMUL_KERNELS) {
    const g = await benchMatmul(1024, THREADS, 5, k);
    kernels.push(`${k} ${fmt(g)}`);
    peak = Math.max(peak, g);
  }
  console.log(
    `ggml CPU matmul kernels (1024^3, GFLOP/s): ${kernels.join(', ')}; peak ${fmt(peak)}`,
  );
  const fpt = flopsPerToken();
  const rows: string[][] = [];
  for (const type of TYPES) {
    const times = INTERLEAVE ? await interleaved(type) : null;
    for (const layout of LAYOUTS) {
      const r = child(type, layout);
      if (times) {
        r.msPerWindow = times.get(layout.name)!;
        r.tps = SEQ / (r.msPerWindow / 1000);
      }
      const gflops = (r.tps * fpt) / 1e9;
      rows.push([
        type,
        r.weights,
        r.layout,
        fmt(r.tps),
        fmt(r.msPerWindow, 0),
        fmt(r.peakRssMiB, 0),
        fmt(r.trainerMiB, 0),
        fmt(r.computeMiB, 0),
        fmt(r.checkpointMiB, 0),
        fmt(gflops),
        fmt((100 * gflops) / peak),
        r.cpuNodes,
        String(r.routed),
      ]);
    }
  }
  const head = [
    'base',
    'weights',
    'layout',
    'tokens/s',
    'ms/window',
    'peak RSS MiB',
    BACKEND === 'cpu' ? 'trainer MiB' : 'peak device MiB',
    'compute MiB',
    'ckpt MiB',
    'GFLOP/s',
    '% of CPU matmul peak',
    'nodes on CPU',
    'routed',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (c: string[]) => '| ' + c.map((x, i) => x.padStart(widths[i]!)).join(' | ') + ' |';
  console.log('\n' + line(head));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const r of rows) console.log(line(r));
  console.log(
    `(layout: mono|ckpt[:lossChunk[:microBatch]]; tokens/s and ms/window from the fastest timed step${INTERLEAVE ? ', layouts timed round-robin in one process' : ''}; model FLOPs per window token: ${fmt(fpt / 1e6)} M (useful work: checkpointing's recompute is not counted); peak RSS = the VmHWM of a fresh process per row; trainer MiB = the trainer's own buffers (weights + LoRA/optimizer + compute + checkpoints; on a GPU those on the device); routed = input gradients through the dequantize + mul_mat route)`,
  );

  if (process.env.BENCH_PACKING !== '0') {
    // Short chat-like samples (40-64 tokens, the second half trained). "single": one sample per
    // window, with a window of the longest sample (64) or of 512; "pack": as many samples as fit
    // in 512 tokens, each in its own attention segment. Every step sees 512 window tokens.
    const m = await tinyModel({ ...MODEL, type: TYPES[0]! });
    const r = rng(2);
    const samples: Sample[] = [];
    for (let i = 0; i < 96; i++) {
      const n = 40 + Math.floor(r() * 25);
      const tokens = Array.from({ length: n }, () => 3 + Math.floor(r() * 31000));
      samples.push({ tokens, trainMask: tokens.map((_, k) => k >= n / 2) });
    }
    const out: string[] = [];
    for (const [mode, seq] of [
      ['single', 64],
      ['single', SEQ],
      ['pack', SEQ],
    ] as const) {
      const windows = buildWindows(samples, seq, mode);
      const tr = await Trainer.open(
        openOptions({
          modelPath: m.path,
          seqLen: seq,
          rank: RANK,
          alpha: 2 * RANK,
          threads: THREADS,
          backend: BACKEND,
          backwardRoute: ROUTE,
        }),
      );
      const perStep = SEQ / seq; // the same number of window tokens per optimizer step
      await tr.step(windows.slice(0, perStep), adamw({ lr: 1e-4, clipNorm: 0 }));
      let ms = 0;
      let trained = 0;
      const n = Math.max(1, Math.min(2, STEPS));
      for (let s = 0; s < n; s++) {
        const ws = windows.slice(
          (s * perStep) % windows.length,
          ((s * perStep) % windows.length) + perStep,
        );
        const res = await tr.step(ws, adamw({ lr: 1e-4, clipNorm: 0 }));
        ms += res.ms;
        trained += res.nTrained;
      }
      out.push(
        `${mode.padEnd(6)} window ${String(seq).padStart(3)}: ${windows.length} windows for ${samples.length} samples, ${fmt(trained / (ms / 1000))} trained tokens/s`,
      );
      tr.close();
    }
    console.log('\npacking (' + TYPES[0] + '):\n  ' + out.join('\n  '));
  }
}

await main();
