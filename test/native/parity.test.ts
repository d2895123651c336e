// Our training graph against llama.cpp's own inference graph: with B = 0 (the adapter starts as
// the base model exactly) the summed loss over a window must match llama_decode's logits for
// every architecture and weight type the trainer accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Trainer } from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import type { TinyModelOptions } from '../fixtures/tiny-model.ts';
import { openOptions, randomWindow } from './helpers.ts';

// Quantized weights quantize the activations too (Q8_0 / Q8_K) inside the matmul kernels, which
// turns last-bit differences between the two graphs into small loss differences: looser bound.
const cases: [string, TinyModelOptions, number][] = [
  ['llama F32, GQA', { type: 'f32', nHeadKv: 2 }, 1e-4],
  ['llama Q4_0', { type: 'q4_0' }, 1e-3],
  ['llama Q4_K_M', { type: 'q4_k_m' }, 1e-3],
  [
    'qwen2 F32 (biases, NEOX rope)',
    { type: 'f32', arch: 'qwen2', vocab: 'qwen2', nHeadKv: 2 },
    1e-4,
  ],
  ['qwen3 F32 (q/k norms)', { type: 'f32', arch: 'qwen3', vocab: 'qwen2', nHeadKv: 2 }, 1e-4],
];

for (const [name, opts, tol] of cases) {
  test(`training graph = llama.cpp inference at B = 0: ${name}`, async () => {
    const m = await tinyModel(opts);
    const tr = await Trainer.open(
      openOptions({ modelPath: m.path, seqLen: 32, rank: 4, threads: 2 }),
    );
    try {
      const w = randomWindow(32, 11, { maskFirst: 3 });
      const ours = await tr.evaluate([w]);
      const ref = await tr.referenceLoss(w);
      assert.equal(ours.nTrained, ref.nTrained);
      const rel = Math.abs(ours.lossSum - ref.lossSum) / ref.lossSum;
      console.log(`${name}: relative difference ${rel.toExponential(2)}`);
      assert.ok(
        rel < tol,
        `loss ${ours.lossSum} vs llama.cpp ${ref.lossSum} (relative ${rel.toExponential(2)})`,
      );
    } finally {
      tr.close();
    }
  });
}
