// Issue #8 item 8 (native side): the reported gradient norm, clipping by global norm, and the
// AdamW settings (betas, weight decay), checked against hand computations in float64 from the
// tensors the trainer exposes (grad_a/grad_b = the step's averaged gradient, m/v = moments).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NativeError, Trainer } from '../../native/ts/binding.ts';
import type { TensorKind } from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, randomWindow } from './helpers.ts';

const SEQ = 16;

/** Every LoRA tensor of one kind, concatenated in loras() order, as float64. */
function all(tr: Trainer, kinds: [TensorKind, TensorKind]): Float64Array {
  const parts: Float32Array[] = [];
  for (const l of tr.loras()) for (const k of kinds) parts.push(tr.getTensor(l.name, k));
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** PyTorch's clip_grad_norm_ total norm: sqrt of the sum of squares over every gradient. */
function l2(x: Float64Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return Math.sqrt(s);
}

function rel(a: Float64Array, b: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(1e-300, Math.sqrt(den));
}

describe('gradient norm, clipping and AdamW settings (issue #8 item 8)', () => {
  let tr: Trainer;
  let s0: { state: Buffer; adamT: number };
  const ws = [randomWindow(SEQ, 31, { maskFirst: 3 }), randomWindow(SEQ, 32)];

  before(async () => {
    const m = await tinyModel({ type: 'f32', nHeadKv: 2 });
    tr = await Trainer.open(
      openOptions({
        modelPath: m.path,
        seqLen: SEQ,
        rank: 4,
        alpha: 8,
        seed: 9,
        threads: 2,
      }),
    );
    let s = 4242;
    for (const l of tr.loras()) {
      const b = tr.getTensor(l.name, 'b');
      for (let i = 0; i < b.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        b[i] = (s / 4294967296 - 0.5) * 0.4;
      }
      tr.setTensor(l.name, 'b', b);
    }
    s0 = tr.getState();
  });
  after(() => tr?.close());

  const grads = () => all(tr, ['grad_a', 'grad_b']);

  test('gradNorm is the global L2 norm over every grad_a and grad_b (step and grad)', async () => {
    tr.setState(s0.state, s0.adamT);
    const r = await tr.step(ws, adamw({ lr: 0, clipNorm: 0 }));
    const want = l2(grads());
    assert.ok(want > 0);
    assert.ok(Math.abs(r.gradNorm - want) / want < 1e-4, `step gradNorm ${r.gradNorm} vs ${want}`);
    const g = await tr.grad(ws[1]!);
    const want1 = l2(grads());
    assert.ok(
      Math.abs(g.gradNorm - want1) / want1 < 1e-4,
      `grad gradNorm ${g.gradNorm} vs ${want1}`,
    );
    assert.notEqual(want1, want);
  });

  // One step from zero moments: m = (1 - beta1) * g', v = (1 - beta2) * g'^2, where g' is the
  // gradient AdamW sees: g * clip / (norm + 1e-6) when norm > clip, else g.
  async function firstMoment(clipNorm: number, beta1 = 0.9, beta2 = 0.999) {
    tr.setState(s0.state, 0);
    const r = await tr.step(ws, adamw({ lr: 1e-3, beta1, beta2, clipNorm }));
    return { r, g: grads(), m: all(tr, ['m_a', 'm_b']), v: all(tr, ['v_a', 'v_b']) };
  }

  test('clipNorm below the norm scales the gradient AdamW sees by clip / norm', async () => {
    const { r: r0 } = await firstMoment(0);
    const clip = r0.gradNorm / 4;
    const { r, g, m } = await firstMoment(clip);
    assert.ok(
      Math.abs(r.gradNorm - r0.gradNorm) / r0.gradNorm < 1e-6,
      'gradNorm is reported before clipping',
    );
    const f = clip / (r.gradNorm + 1e-6);
    const want = g.map((x) => 0.1 * x * f);
    assert.ok(
      rel(m, want) < 1e-5,
      `m vs (1-beta1) g clip/norm: relative difference ${rel(m, want)}`,
    );
    // the accumulators keep the raw (unclipped) gradient
    assert.ok(Math.abs(l2(g) - r.gradNorm) / r.gradNorm < 1e-4);
  });

  test('clipNorm 0 (off) and clipNorm above the norm leave the gradient as it is', async () => {
    for (const clipOf of [() => 0, (n: number) => 10 * n]) {
      const { r: r0 } = await firstMoment(0);
      const { g, m } = await firstMoment(clipOf(r0.gradNorm));
      const want = g.map((x) => 0.1 * x);
      assert.ok(rel(m, want) < 1e-5, `m vs (1-beta1) g: relative difference ${rel(m, want)}`);
    }
  });

  test('beta1 and beta2 are honoured (m = (1-beta1) g, v = (1-beta2) g^2 after one step)', async () => {
    const { g, m, v } = await firstMoment(0, 0.7, 0.95);
    assert.ok(
      rel(
        m,
        g.map((x) => 0.3 * x),
      ) < 1e-5,
      'first moment with beta1 = 0.7',
    );
    assert.ok(
      rel(
        v,
        g.map((x) => 0.05 * x * x),
      ) < 1e-5,
      'second moment with beta2 = 0.95',
    );
  });

  test('weight decay is decoupled: a1 = a0 (1 - lr wd) - lr mhat / (sqrt(vhat) + eps)', async () => {
    const lr = 0.05;
    const wd = 1;
    const eps = 1e-8;
    for (const clipNorm of [0, 0.5]) {
      tr.setState(s0.state, 0);
      const a0 = all(tr, ['a', 'b']);
      const r = await tr.step(ws, adamw({ lr, weightDecay: wd, eps, clipNorm }));
      const a1 = all(tr, ['a', 'b']);
      const f = clipNorm > 0 && r.gradNorm > clipNorm ? clipNorm / (r.gradNorm + 1e-6) : 1;
      const g = grads();
      // first step: mhat = g', vhat = g'^2 (bias correction with t = 1)
      const want = a0.map((a, i) => {
        const gs = g[i]! * f;
        return a * (1 - lr * wd) - (lr * gs) / (Math.abs(gs) + eps);
      });
      assert.ok(rel(a1, want) < 1e-5, `clipNorm ${clipNorm}: relative difference ${rel(a1, want)}`);
      // and without the decay term the prediction is clearly off (the check can tell)
      const noWd = a0.map((a, i) => a - (lr * g[i]! * f) / (Math.abs(g[i]! * f) + eps));
      assert.ok(rel(a1, noWd) > 1e-2);
    }
  });

  test('an invalid clipNorm is refused before anything runs', async () => {
    for (const clipNorm of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(
        tr.step(ws, adamw({ lr: 1e-3, clipNorm })),
        (e: unknown) =>
          e instanceof NativeError && e.code === 'E_CONFIG' && /clipping/.test(e.message),
      );
    }
  });
});
