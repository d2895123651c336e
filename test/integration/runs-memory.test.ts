/**
 * The memory estimate (core/runs/estimate.ts) against the peak the REAL trainer measures on the
 * benchmark model (test/bench/train.bench.ts: llama, 1024 embedding, 8 layers, 2816 FFN,
 * 16 heads, 32k vocab, Q4_0; sequence 512; rank 16 on all 7 targets; one window per step).
 * On the CPU backend the peak is the training process's peak RSS. One step is enough: the
 * graph, its buffers and the optimizer state are all allocated by the end of the first.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { estimateBytes } from '../../core/runs/estimate.ts';
import { readModelDims } from '../../core/runs/model-dims.ts';
import { TrainerProcess } from '../../core/training/trainer-process.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { writeWindows } from './runs-fixtures.ts';

const SEQ = 512;
const targets = [
  'attn_q',
  'attn_k',
  'attn_v',
  'attn_output',
  'ffn_gate',
  'ffn_up',
  'ffn_down',
] as const;

test(
  'the memory estimate is within 25% of the measured peak on the benchmark model',
  { timeout: 600_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
    try {
      const model = await tinyModel({
        type: 'q4_0',
        arch: 'llama',
        vocab: 'llama-spm',
        nEmbd: 1024,
        nLayer: 8,
        nFf: 2816,
        nHead: 16,
        nHeadKv: 16,
        nCtx: 2048,
        name: 'overnight-bench',
      });
      const data = writeWindows(
        join(dir, 'bench.tok'),
        2,
        SEQ,
        (w, t) => 3 + ((w * 131 + t * 17) % 31000),
      );
      const proc = new TrainerProcess({ inheritOutput: false });
      let peak = 0;
      proc.on('event', (e) => {
        if (e.type === 'step') peak = Math.max(peak, e.metric.memoryBytes ?? 0);
      });
      proc.start({
        modelPath: model.path,
        dataPath: data,
        adapterPath: join(dir, 'adapter.gguf'),
        lora: { rank: 16, alpha: 32, targets: [...targets] },
        optimizer: { lr: 1e-4 },
        schedule: { type: 'constant' },
        windowsPerStep: 1,
        maxSteps: 1,
        threads: 2,
      });
      const fin = await proc.finished;
      assert.equal(fin.type, 'done', JSON.stringify(fin));
      const dims = await readModelDims(model.path);
      const est = estimateBytes(
        {
          loraRank: 16,
          loraTargets: [...targets],
          sequenceLength: SEQ,
          effectiveBatch: 1,
          microBatch: 1,
        },
        dims,
      );
      const err = (est - peak) / peak;
      assert.ok(
        Math.abs(err) <= 0.25,
        `estimate ${(est / 2 ** 20).toFixed(0)} MiB vs measured ${(peak / 2 ** 20).toFixed(0)} MiB (${(err * 100).toFixed(1)}%)`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
