// npm run bench:memory — the trainer's measured peak memory against the estimate
// (core/runs/estimate.ts estimateBytes) on generated llama-shaped Q4_K models of about 0.1B,
// 0.5B and 1B parameters, at sequence 512 and 1024, rank 16 on all seven targets.
//
// Each row: the job a run with that config would get (core/runs/job.ts jobFor: threads,
// micro-batch, checkpointing, loss chunk resolved as for a run), trained for --steps optimizer
// steps in a fresh process (memory-child.ts, which opens the trainer with core/training/run.ts
// trainerOpenOptions, so whatever a run passes to the native trainer the bench passes too), and
// that process's peak resident memory (VmHWM from /proc) next to the estimate of the job's
// layout (estimateBytes with the job's checkpointing and lossChunk), with the error
// (estimate - measured) / measured and pass/FAIL against issue #11's 15%; also the trainer's own
// buffers (trainer.memory(): weights, LoRA + optimizer, compute, checkpoints). Last, the
// estimate of issue #11's 8B target with its breakdown (no such model is trained). On the CPU backend the budget is system RAM, so VmHWM is what the
// estimate must predict (docs/runs.md "Memory estimate").
//
// Shapes (llama architecture, Q4_K weights, F32 norms):
//   0.1b  768 embedding, 12 layers, 2048 FFN, 12 heads,  4 KV heads  (~0.12B with a 32k vocab)
//   0.5b 1024 embedding, 24 layers, 4096 FFN, 16 heads,  8 KV heads  (~0.43B)
//   1b   2048 embedding, 22 layers, 5632 FFN, 32 heads,  4 KV heads  (TinyLlama-1.1B's shape)
// Vocabulary: the fixture's Llama 2 SentencePiece tokenizer, 32000 tokens (llama-spm); `--vocab
// llama-bpe` uses Llama 3's 128256 (the loss buffers then dominate the small sizes).
//
// Options: --sizes 0.1b,0.5b,1b  --seqs 512,1024  --steps 1  --threads N (default: physical
// cores)  --micro-batch 1  --checkpointing auto|on|off (default off; the estimate follows
// the job's choice)  --vocab llama-spm|llama-bpe  --max-minutes 10 (a row predicted to take
// longer is skipped with the reason; the prediction is 4 x frozen FLOPs + 6 x LoRA FLOPs per
// token at a quarter of ggml's measured F32 matmul peak, what bench:train achieves on this CPU).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { checkpointingChoices, loraTargets, runConfigSchema } from '../../contract/index.ts';
import {
  estimateBytes,
  LLAMA3_8B_Q4_K_M,
  lossChunkRows,
  loraParameterCount,
  memoryParts,
} from '../../core/runs/estimate.ts';
import { jobFor } from '../../core/runs/job.ts';
import { readModelDims } from '../../core/runs/model-dims.ts';
import { physicalCores } from '../../core/system/cpu.ts';
import { benchMatmul } from '../../native/ts/binding.ts';
import type { MemoryEntry } from '../../native/ts/binding.ts';
import { writeTokenData } from '../../native/ts/token-data.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import type { TinyVocab } from '../fixtures/tiny-model.ts';

const SIZES = {
  '0.1b': { nEmbd: 768, nLayer: 12, nFf: 2048, nHead: 12, nHeadKv: 4 },
  '0.5b': { nEmbd: 1024, nLayer: 24, nFf: 4096, nHead: 16, nHeadKv: 8 },
  '1b': { nEmbd: 2048, nLayer: 22, nFf: 5632, nHead: 32, nHeadKv: 4 },
} as const;
type Size = keyof typeof SIZES;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
function list(name: string, fallback: string): string[] {
  return (arg(name) ?? fallback).split(',').map((s) => s.trim());
}
function whole(name: string, fallback: number, min = 1): number {
  const v = Number(arg(name) ?? fallback);
  if (!Number.isInteger(v) || v < min)
    throw new Error(`--${name} must be a whole number >= ${min}`);
  return v;
}

const sizes = list('sizes', '0.1b,0.5b,1b');
for (const s of sizes)
  if (!(s in SIZES))
    throw new Error(`--sizes: unknown size "${s}" (${Object.keys(SIZES).join(', ')})`);
const seqs = list('seqs', '512,1024').map(Number);
for (const s of seqs)
  if (!Number.isInteger(s) || s < 16) throw new Error(`--seqs: "${s}" is not a sequence length`);
const STEPS = whole('steps', 1);
const THREADS = whole('threads', physicalCores());
const MICRO = whole('micro-batch', 1);
const CKPT = (arg('checkpointing') ?? 'off') as (typeof checkpointingChoices)[number];
if (!checkpointingChoices.includes(CKPT))
  throw new Error(`--checkpointing must be one of ${checkpointingChoices.join(', ')}`);
const VOCAB = (arg('vocab') ?? 'llama-spm') as TinyVocab;
const MAX_MINUTES = Number(arg('max-minutes') ?? 10);
const RANK = 16;
/** The issue's bar: the estimate within 15% of the measured peak. */
const TOLERANCE = 0.15;

const MiB = 1024 * 1024;
const mib = (b: number) => (b / MiB).toFixed(0);

function randomWindows(n: number, seqLen: number, vocab: number, seed: number): TokenWindow[] {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  return Array.from({ length: n }, () => {
    const tokens = new Int32Array(seqLen);
    for (let i = 0; i < seqLen; i++) tokens[i] = 3 + Math.floor(next() * (vocab - 3));
    const labels = new Int32Array(seqLen).fill(-1);
    for (let i = 0; i < seqLen - 1; i++) labels[i] = tokens[i + 1]!;
    return { tokens, labels };
  });
}

interface ChildResult {
  vmHwm: number | null;
  peakRss: number;
  maxRss: number;
  memory: MemoryEntry[];
  openMs: number;
  stepMs: number[];
}

async function main(): Promise<void> {
  const peak = await benchMatmul(1024, THREADS, 3);
  console.log(
    `bench:memory — llama Q4_K, vocab ${VOCAB}, rank ${RANK} x 7 targets, ${STEPS} step(s), ${THREADS} threads, micro-batch ${MICRO}, checkpointing ${CKPT}; ggml F32 matmul peak ${peak.toFixed(1)} GFLOP/s`,
  );
  const rows: string[][] = [];
  const dir = mkdtempSync(join(os.tmpdir(), 'overnight-bench-memory-'));
  try {
    for (const size of sizes as Size[]) {
      const shape = SIZES[size];
      const t0 = Date.now();
      const model = await tinyModel({
        arch: 'llama',
        type: 'q4_k',
        vocab: VOCAB,
        ...shape,
        nCtx: 4096,
        name: `overnight-bench-memory-${size}`,
      });
      const genS = (Date.now() - t0) / 1000;
      const dims = await readModelDims(model.path);
      const frozen =
        dims.layers *
          (2 * dims.embd * dims.embd +
            2 * dims.embd * ((dims.embd * dims.kvHeads) / dims.heads) +
            3 * dims.embd * dims.ffn) +
        dims.vocab * dims.embd;
      console.log(
        `  ${size}: ${(frozen / 1e9).toFixed(2)}B parameters in matmuls (+${((dims.vocab * dims.embd) / 1e6).toFixed(0)}M embedding), file ${mib(dims.weightBytes)} MiB${genS > 1 ? `, generated in ${genS.toFixed(0)} s` : ' (cached)'}`,
      );
      for (const seq of seqs) {
        const cfg = runConfigSchema.parse({
          model: model.path,
          dataset: '-',
          preset: 'custom',
          loraRank: RANK,
          loraAlpha: 2 * RANK,
          loraTargets: [...loraTargets],
          sequenceLength: seq,
          effectiveBatch: MICRO,
          microBatch: MICRO,
          checkpointing: CKPT,
          threads: THREADS,
          maxSteps: STEPS,
          validationShare: 0,
          earlyStopping: false,
          finalAdapter: 'last',
        });
        const data = join(dir, `${size}-${seq}.tokens`);
        const job = jobFor(
          { id: 'bench', name: 'bench-memory', folder: dir, totalSteps: STEPS, config: cfg },
          null,
          {
            modelPath: model.path,
            trainFile: data,
            validationFile: null,
            memory: { dims, freeBytes: os.freemem() },
          },
        );
        // The estimate of the layout the job trains with (checkpointing resolved, its loss chunk).
        const layout = { checkpointing: job.checkpointing === true, lossChunk: job.lossChunk ?? 0 };
        const est = estimateBytes(cfg, dims, layout);
        const parts = memoryParts(cfg, dims, layout);
        const label = [size, String(seq), job.checkpointing ? 'on' : 'off'];
        const flopsPerToken =
          4 * frozen + 6 * 2 * loraParameterCount(cfg, dims) + 12 * dims.layers * seq * dims.embd;
        const predictedS =
          ((flopsPerToken * seq * MICRO * (STEPS + 0.5)) / (0.25 * peak * 1e9)) | 0;
        if (predictedS > MAX_MINUTES * 60) {
          console.log(
            `  ${size} @ ${seq}: skipped: about ${(predictedS / 60).toFixed(0)} min predicted (${(flopsPerToken / 1e9).toFixed(1)} GFLOP per token at ${(0.25 * peak).toFixed(0)} GFLOP/s), over --max-minutes ${MAX_MINUTES}`,
          );
          rows.push([
            ...label,
            mib(est),
            'skipped',
            '-',
            '-',
            '-',
            '-',
            '-',
            '-',
            `~${(predictedS / 60).toFixed(0)} min`,
          ]);
          continue;
        }
        writeTokenData(data, seq, randomWindows(MICRO, seq, dims.vocab, seq));
        const jobFile = join(dir, 'job.json');
        writeFileSync(jobFile, JSON.stringify(job));
        const child = spawnSync(
          process.execPath,
          ['--import', 'tsx', join(import.meta.dirname, 'memory-child.ts'), jobFile],
          { encoding: 'utf8', maxBuffer: 64 * MiB },
        );
        const line = child.stdout.split('\n').find((l) => l.startsWith('BENCH_MEMORY '));
        if (child.status !== 0 || !line) {
          console.log(
            `  ${size} @ ${seq}: the trainer failed (exit ${child.status}):\n${child.stderr.slice(-2000)}`,
          );
          rows.push([...label, mib(est), 'failed', '-', '-', '-', '-', '-', '-', '-']);
          continue;
        }
        const r = JSON.parse(line.slice('BENCH_MEMORY '.length)) as ChildResult;
        const measured = r.vmHwm ?? r.maxRss;
        const own = r.memory.reduce(
          (t, e) => ({
            w: t.w + e.weights,
            l: t.l + e.lora,
            c: t.c + e.compute,
            k: t.k + (e.checkpoint ?? 0),
          }),
          { w: 0, l: 0, c: 0, k: 0 },
        );
        const err = ((est - measured) / measured) * 100;
        console.log(
          `  ${size} @ ${seq}: estimate parts (MiB) ${Object.entries(parts)
            .map(([k, v]) => `${k} ${mib(v)}`)
            .join(
              ', ',
            )}; job: checkpointing ${job.checkpointing}, lossChunk ${job.lossChunk}, microBatch ${job.microBatch}; measured ${mib(measured)} MiB (${err >= 0 ? '+' : ''}${err.toFixed(1)}%)`,
        );
        rows.push([
          ...label,
          mib(est),
          mib(measured),
          `${err >= 0 ? '+' : ''}${err.toFixed(1)}%`,
          Math.abs(err) <= TOLERANCE * 100 ? 'pass' : 'FAIL',
          mib(own.w),
          mib(own.l),
          mib(own.c),
          mib(own.k),
          `${(r.stepMs.reduce((a, b) => a + b, 0) / r.stepMs.length / 1000).toFixed(1)} s`,
        ]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const head = [
    'size',
    'seq',
    'checkpointing',
    'estimate MiB',
    'peak (VmHWM) MiB',
    'error',
    `within ${TOLERANCE * 100}%`,
    'trainer weights MiB',
    'trainer LoRA+opt MiB',
    'trainer compute MiB',
    'trainer ckpt MiB',
    'per step',
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => `| ${r.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  console.log(`\n${fmt(head)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(fmt(r));
  console.log(
    `(error = (estimate - measured) / measured, pass = within ${TOLERANCE * 100}%; peak = the training process's VmHWM; trainer = its own buffers from trainer.memory())`,
  );
  target8b();
}

/**
 * Issue #11's target, estimated (no such model is trained here): a Llama-3-8B-shaped Q4_K_M
 * model (the real file is 4,920,734,496 bytes) at sequence 1024, rank 16 on all seven targets,
 * with checkpointing, against 8 GB (8e9 bytes). core/runs/estimate.test.ts asserts the same.
 */
function target8b(): void {
  const dims = LLAMA3_8B_Q4_K_M;
  const cfg = runConfigSchema.parse({
    model: '-',
    dataset: '-',
    loraRank: 16,
    loraTargets: [...loraTargets],
    sequenceLength: 1024,
    microBatch: 1,
  });
  const lossChunk = lossChunkRows(dims, cfg.sequenceLength, cfg.microBatch);
  console.log(
    `\nLlama-3-8B-shaped Q4_K_M (32 layers, 4096 embedding, 14336 FFN, 32/8 heads, 128256 vocab, weights 4.92e9 bytes), sequence 1024, rank 16 x 7 targets, checkpointing on, lossChunk ${lossChunk}:`,
  );
  // on a GPU backend the backward route's transient weight-block copies count too
  for (const gpu of [false, true]) {
    const on = memoryParts(cfg, dims, { checkpointing: true, lossChunk, gpu });
    const total = Object.values(on).reduce((a, b) => a + b, 0);
    const off = estimateBytes(cfg, dims, { checkpointing: false, gpu });
    const parts = Object.entries(on)
      .map(([k, v]) => `${k} ${mib(v)} MiB`)
      .join(', ');
    console.log(
      `  ${gpu ? 'GPU' : 'CPU'}: ${parts}\n    total ${(total / 1e9).toFixed(2)} GB (${mib(total)} MiB): ${total <= 8e9 ? 'within' : 'OVER'} the 8 GB (8e9 bytes) target; without checkpointing ${(off / 1e9).toFixed(2)} GB`,
    );
  }
}

await main();
