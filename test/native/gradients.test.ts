// Issue #3 tests 1, 2 (defects 1, 2, 4) and 3, issue #8 items 10 and 12a: gradients of the LoRA
// trainer on a tiny F32 model.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Trainer } from '../../native/ts/binding.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, maxAbs, randomWindow, relDiff } from './helpers.ts';

const SEQ = 16;

// B = 0 at init makes dL/dA = 0; give every B small random values for the checks
function randomB(tr: Trainer, seed: number): void {
  let s = seed;
  for (const l of tr.loras()) {
    const b = tr.getTensor(l.name, 'b');
    for (let i = 0; i < b.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      b[i] = (s / 4294967296 - 0.5) * 0.4;
    }
    tr.setTensor(l.name, 'b', b);
  }
}

async function meanLoss(tr: Trainer, w: TokenWindow): Promise<number> {
  const r = await tr.evaluate([w]);
  return r.lossSum / r.nTrained;
}

/** Central differences of the mean loss against grad() for the 6 largest entries of A and B. */
async function finiteDifferences(
  tr: Trainer,
  w: TokenWindow,
  names: string[],
  eps = 4e-3,
): Promise<void> {
  for (const name of names) {
    for (const kind of ['a', 'b'] as const) {
      await tr.grad(w);
      const g = tr.getTensor(name, kind === 'a' ? 'grad_a' : 'grad_b');
      // the 6 largest-magnitude entries (float32 finite differences need a signal above noise)
      const idx = [...g.keys()].sort((i, j) => Math.abs(g[j]!) - Math.abs(g[i]!)).slice(0, 6);
      const p = tr.getTensor(name, kind);
      const fd = new Float32Array(idx.length);
      const an = new Float32Array(idx.length);
      for (let k = 0; k < idx.length; k++) {
        const i = idx[k]!;
        const orig = p[i]!;
        p[i] = orig + eps;
        tr.setTensor(name, kind, p);
        const lp = await meanLoss(tr, w);
        p[i] = orig - eps;
        tr.setTensor(name, kind, p);
        const lm = await meanLoss(tr, w);
        p[i] = orig;
        tr.setTensor(name, kind, p);
        fd[k] = (lp - lm) / (2 * eps);
        an[k] = g[i]!;
      }
      const rel = relDiff(fd, an);
      assert.ok(maxAbs(an) > 0, `${name}.${kind}: analytic gradient is zero`);
      assert.ok(
        rel < 1e-2,
        `${name}.${kind}: relative error ${rel.toExponential(2)} (fd ${[...fd].map((x) => x.toExponential(3))} vs ${[...an].map((x) => x.toExponential(3))})`,
      );
    }
  }
}

describe('LoRA gradients (tiny F32 model)', () => {
  let tr: Trainer;
  before(async () => {
    const m = await tinyModel({ type: 'f32', nHeadKv: 2 });
    tr = await Trainer.open(
      openOptions({
        modelPath: m.path,
        seqLen: SEQ,
        rank: 4,
        alpha: 8,
        seed: 7,
        threads: 2,
      }),
    );
    randomB(tr, 12345);
  });
  after(() => tr?.close());

  // Test 1 (+ defect 2: attn_k / attn_v get a gradient; + defect 4: masked rows contribute none —
  // the window masks its first 5 positions, and the finite difference only sees kept rows).
  test('finite differences match analytic gradients of A and B (relative error < 1e-2)', async () => {
    const w = randomWindow(SEQ, 3, { maskFirst: 5 });
    await finiteDifferences(tr, w, [
      'blk.0.attn_q.weight',
      'blk.0.attn_k.weight',
      'blk.1.attn_v.weight',
      'blk.1.ffn_down.weight',
      'blk.0.ffn_gate.weight',
    ]);
  });

  test('defect 2: attn_k and attn_v LoRA pairs receive gradients in every layer', async () => {
    await tr.grad(randomWindow(SEQ, 4));
    for (const l of [0, 1]) {
      for (const t of ['attn_k', 'attn_v']) {
        assert.ok(
          maxAbs(tr.getTensor(`blk.${l}.${t}.weight`, 'grad_b')) > 0,
          `blk.${l}.${t}: zero gradient on B`,
        );
        assert.ok(
          maxAbs(tr.getTensor(`blk.${l}.${t}.weight`, 'grad_a')) > 0,
          `blk.${l}.${t}: zero gradient on A`,
        );
      }
    }
  });

  test('defect 1: gradient accumulators are zeroed each optimizer step, AdamW moments are kept', async () => {
    const ws = [randomWindow(SEQ, 5), randomWindow(SEQ, 6)];
    const name = 'blk.1.attn_output.weight';
    await tr.step(ws, adamw({ lr: 0, clipNorm: 0 })); // lr 0: parameters stay, so both steps see the same gradient
    const g1 = tr.getTensor(name, 'grad_b');
    const m1 = tr.getTensor(name, 'm_b');
    await tr.step(ws, adamw({ lr: 0, clipNorm: 0 }));
    const g2 = tr.getTensor(name, 'grad_b');
    const m2 = tr.getTensor(name, 'm_b');
    assert.ok(
      relDiff(g2, g1) < 1e-5,
      `step 2 applied ${relDiff(g2, g1).toExponential(2)} relative extra gradient (accumulators not reset)`,
    );
    // m2 = 0.9 m1 + 0.1 g = 0.19 g: the moment kept its history
    const expect = new Float32Array(m1.length);
    for (let i = 0; i < m1.length; i++) expect[i] = 0.9 * m1[i]! + 0.1 * g2[i]!;
    assert.ok(relDiff(m2, expect) < 1e-4, 'AdamW first moment was reset or corrupted');
  });

  // Test 3 / defect 4. SEQ = 16 puts every window in the full-size bucket (ov_bucket: multiples
  // of max(16, T/8), capped at T), so masked positions ARE rows of the vocabulary projection;
  // only the trainer's own row mask (logits x 0 + all-zero label row) keeps them out. A masked
  // row's cross-entropy term is 0 even without the multiply, but its gradient would be
  // softmax(logits) of that row, which depends on the tokens at that position.
  test('test 3 / defect 4: masked positions that reach the projection change neither loss nor gradients', async () => {
    const base = randomWindow(SEQ, 8);
    const mask = new Int32Array(SEQ).fill(1);
    // prompt-like head, a hole, and a masked tail after the last trained position
    for (const i of [0, 1, 2, 3, 9, 12, 13, 14, 15]) mask[i] = 0;
    const kept = [...mask.keys()].filter((i) => mask[i] && base.labels[i]! >= 0).length;
    const names = [
      'blk.0.attn_q.weight',
      'blk.0.attn_v.weight',
      'blk.1.ffn_up.weight',
      'blk.1.ffn_down.weight',
    ];
    const grads = () =>
      names.flatMap((n) => [tr.getTensor(n, 'grad_a'), tr.getTensor(n, 'grad_b')]);

    const a = { ...base, mask };
    const ra = await tr.grad(a);
    assert.equal(ra.nTrained, kept);
    const ga = grads();
    assert.ok(ga.every((g) => maxAbs(g) > 0));

    // 1. other labels at the masked positions
    const relabelled = {
      tokens: base.tokens,
      labels: base.labels.map((l, i) => (mask[i] ? l : (l + 77) % 1000)),
      mask,
    };
    // 2. other tokens at the masked tail: causal attention keeps them away from every trained
    //    position, but their rows still go through the projection
    const retokened = {
      tokens: base.tokens.map((t, i) => (i >= 12 ? (t + 311) % 1000 : t)),
      labels: base.labels,
      mask,
    };
    for (const [what, w] of [
      ['labels', relabelled],
      ['tail tokens', retokened],
    ] as const) {
      const r = await tr.grad(w);
      assert.equal(r.loss, ra.loss, `${what}: loss`);
      assert.equal(r.nTrained, kept);
      const g = grads();
      for (let k = 0; k < g.length; k++) {
        const d = relDiff(g[k]!, ga[k]!);
        assert.equal(
          d,
          0,
          `${what}: gradient of ${names[k >> 1]}.${k & 1 ? 'b' : 'a'} changed by ${d.toExponential(2)} (masked rows leak into the gradient)`,
        );
      }
    }
    // and the loss is the mean over kept tokens only: equals evaluate() on the same window
    const ev = await tr.evaluate([a]);
    assert.equal(ev.nTrained, kept);
    assert.ok(Math.abs(ev.lossSum / ev.nTrained - ra.loss) < 1e-4);
  });

  test('packing: a segment does not see the tokens of the segment before it', async () => {
    const w = randomWindow(SEQ, 9);
    const seg = new Int32Array(SEQ);
    for (let i = 8; i < SEQ; i++) seg[i] = 1;
    // only the second segment is trained; changing the first segment's tokens must not matter
    const labels = w.labels.map((l, i) => (i >= 8 ? l : -1));
    const r1 = await tr.evaluate([{ tokens: w.tokens, labels, segments: seg }]);
    const tokens2 = w.tokens.map((t, i) => (i < 8 ? (t + 13) % 1000 : t));
    const r2 = await tr.evaluate([{ tokens: tokens2, labels, segments: seg }]);
    assert.equal(r1.lossSum, r2.lossSum);
    // and the second segment alone, at positions 0.., gives the same loss
    const alone = {
      tokens: new Int32Array(SEQ),
      labels: new Int32Array(SEQ).fill(-1),
      segments: new Int32Array(SEQ).fill(1),
    };
    alone.tokens.set(w.tokens.subarray(8), 0);
    alone.labels.set(labels.subarray(8), 0);
    for (let i = 8; i < SEQ; i++) alone.segments[i] = 2;
    const r3 = await tr.evaluate([alone]);
    assert.ok(Math.abs(r3.lossSum - r1.lossSum) < 1e-3, `${r3.lossSum} vs ${r1.lossSum}`);
  });
});

// Issue #8 item 12a: with fewer trained positions than the window length, only
// ov_bucket(T, kept) rows reach the vocabulary projection (get_rows of the trained positions,
// padded with mask-0 rows); the gradient through that path must match finite differences too.
describe('LoRA gradients when fewer output rows than positions reach the projection', () => {
  const T = 64;
  let tr: Trainer;
  before(async () => {
    const m = await tinyModel({ type: 'f32', nHeadKv: 2 });
    tr = await Trainer.open(
      openOptions({
        modelPath: m.path,
        seqLen: T,
        rank: 4,
        alpha: 8,
        seed: 11,
        threads: 2,
      }),
    );
    randomB(tr, 54321);
  });
  after(() => tr?.close());

  test('finite differences match A and B in a 32-row bucket of a 64-token window (20 trained, 12 padding rows)', async () => {
    const w = randomWindow(T, 17);
    // 20 trained positions spread over the window (every third, from position 2)
    const labels = w.labels.map((l, i) => (i % 3 === 2 && i < 2 + 3 * 20 ? l : -1));
    assert.equal(labels.filter((l) => l >= 0).length, 20); // -> bucket 32 of ov_bucket(64, 20)
    await finiteDifferences(
      tr,
      { tokens: w.tokens, labels },
      [
        'blk.0.attn_q.weight',
        'blk.0.attn_k.weight',
        'blk.1.attn_v.weight',
        'blk.1.attn_output.weight',
        'blk.1.ffn_down.weight',
        'blk.0.ffn_up.weight',
      ],
      1e-2,
    ); // a larger step: the mean over 20 tokens of a ~15-nat loss leaves float32 noise of ~1e-6
  });
});
