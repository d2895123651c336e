// Issue #8 item 12b: the backward pass through frozen quantized weights (OUT_PROD with a Q4_0,
// Q8_0 or Q4_K first operand, patch 0002) against the same model stored as F32 with exactly the
// dequantized values (tinyModel's `dequantize` option). The forward matmuls of the quantized
// model also quantize the activations (Q8_0 / Q8_K), so the two agree closely, not bit for bit:
// every LoRA gradient together within 2% (norm of the difference / norm).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Trainer } from '../../native/ts/binding.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import type { TinyModelType } from '../fixtures/tiny-model.ts';
import { openOptions, randomWindow } from './helpers.ts';

const SEQ = 32;

/** grad(w) with a fixed non-zero B; returns the loss and every grad_a, grad_b concatenated. */
async function gradients(type: TinyModelType, dequantize: boolean, w: TokenWindow) {
  const m = await tinyModel({ type, dequantize });
  const tr = await Trainer.open(
    openOptions({
      modelPath: m.path,
      seqLen: SEQ,
      rank: 4,
      alpha: 8,
      seed: 3,
      threads: 2,
    }),
  );
  try {
    let s = 99;
    for (const l of tr.loras()) {
      const b = tr.getTensor(l.name, 'b');
      for (let i = 0; i < b.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        b[i] = (s / 4294967296 - 0.5) * 0.2;
      }
      tr.setTensor(l.name, 'b', b);
    }
    const r = await tr.grad(w);
    const parts = tr
      .loras()
      .flatMap((l) => [tr.getTensor(l.name, 'grad_a'), tr.getTensor(l.name, 'grad_b')]);
    const g = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      g.set(p, o);
      o += p.length;
    }
    return { loss: r.loss, g, weightTypes: tr.info.weightTypes };
  } finally {
    tr.close();
  }
}

function rel(a: Float64Array, b: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('LoRA gradients through quantized weights = through their dequantized F32 values', () => {
  const w = randomWindow(SEQ, 41, { maskFirst: 6 });
  const cases: [TinyModelType, string][] = [
    ['q4_0', 'q4_0'],
    ['q8_0', 'q8_0'],
    ['q4_k', 'q4_K'],
  ];
  for (const [type, ggmlName] of cases) {
    test(`${type}: every LoRA gradient within 2% of the dequantized F32 model's`, async () => {
      const q = await gradients(type, false, w);
      const f = await gradients(type, true, w);
      assert.deepEqual(q.weightTypes, [ggmlName]);
      assert.deepEqual(f.weightTypes, ['f32']);
      const d = rel(q.g, f.g);
      assert.ok(d < 0.02, `${type}: gradients differ by ${(d * 100).toFixed(2)}%`);
      assert.ok(Math.abs(q.loss - f.loss) / f.loss < 0.01, `${type}: loss ${q.loss} vs ${f.loss}`);
    });
  }

  test('the comparison can tell: Q4_0 against the dequantized Q8_0 model is far outside 2%', async () => {
    // same random weights before quantization, so only the 4-bit rounding differs
    const q4 = await gradients('q4_0', false, w);
    const f8 = await gradients('q8_0', true, w);
    const d = rel(q4.g, f8.g);
    assert.ok(d > 0.05, `Q4_0 vs dequantized Q8_0 differ by only ${(d * 100).toFixed(2)}%`);
  });
});
