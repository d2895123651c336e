// Issue #11: the trainer's memory layouts give the same numbers as the monolithic graph —
// activation checkpointing (one layer recomputed at a time), the chunked loss head, and
// micro-batches of several windows in one graph — plus their options and memory report.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Trainer } from '../../native/ts/binding.ts';
import type { OpenOptions } from '../../native/ts/binding.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, randomWindow, relDiff } from './helpers.ts';

const SEQ = 32;

/** Small random B (B = 0 at init would make every A gradient 0). */
function randomB(tr: Trainer, seed: number): void {
  let s = seed >>> 0;
  for (const l of tr.loras()) {
    const b = tr.getTensor(l.name, 'b');
    for (let i = 0; i < b.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      b[i] = (s / 4294967296 - 0.5) * 0.4;
    }
    tr.setTensor(l.name, 'b', b);
  }
}

/** Three windows of different fill: packed samples (isolated segments), a masked prefix, few labels. */
function windows(): TokenWindow[] {
  const packed = randomWindow(SEQ, 11);
  const segments = new Int32Array(SEQ);
  for (let i = 0; i < SEQ; i++) segments[i] = i < 9 ? 0 : i < 20 ? 1 : 2;
  for (const end of [8, 19]) packed.labels[end] = -1; // no label across a sample boundary
  packed.segments = segments;
  const prefix = randomWindow(SEQ, 12, { maskFirst: 13 });
  const sparse = randomWindow(SEQ, 13);
  for (let i = 0; i < SEQ; i++) if (i % 5 !== 0) sparse.labels[i] = -1;
  return [packed, prefix, sparse];
}

interface Grads {
  loss: number;
  t: Map<string, Float32Array>;
}

function grads(tr: Trainer, loss: number): Grads {
  const t = new Map<string, Float32Array>();
  for (const l of tr.loras()) {
    t.set(`${l.name}.grad_a`, tr.getTensor(l.name, 'grad_a'));
    t.set(`${l.name}.grad_b`, tr.getTensor(l.name, 'grad_b'));
  }
  return { loss, t };
}

function params(tr: Trainer): Map<string, Float32Array> {
  const t = new Map<string, Float32Array>();
  for (const l of tr.loras()) {
    t.set(`${l.name}.a`, tr.getTensor(l.name, 'a'));
    t.set(`${l.name}.b`, tr.getTensor(l.name, 'b'));
  }
  return t;
}

/** The largest relative difference over every tensor (L2 norm of the difference / of b's). */
function worst(a: Map<string, Float32Array>, b: Map<string, Float32Array>): [number, string] {
  let w: [number, string] = [0, ''];
  assert.equal(a.size, b.size);
  for (const [k, x] of a) {
    const d = relDiff(x, b.get(k)!);
    if (!(d <= w[0])) w = [d, k];
  }
  return w;
}

function assertSame(a: Grads, b: Grads, tol: number, what: string): void {
  const dl = Math.abs(a.loss - b.loss) / Math.abs(b.loss);
  assert.ok(dl <= tol, `${what}: loss ${a.loss} vs ${b.loss} (relative ${dl.toExponential(2)})`);
  const [d, k] = worst(a.t, b.t);
  assert.ok(d <= tol, `${what}: ${k} differs by ${d.toExponential(2)} (tolerance ${tol})`);
}

async function open(path: string, o: Partial<OpenOptions>): Promise<Trainer> {
  const tr = await Trainer.open(openOptions({ modelPath: path, seqLen: SEQ, threads: 2, ...o }));
  randomB(tr, 7);
  return tr;
}

describe('checkpointing, chunked loss and micro-batches (issue #11)', () => {
  let f32 = '';
  let q40 = '';
  const open_: Trainer[] = [];
  before(async () => {
    // GQA: 4 query heads over 2 kv heads
    f32 = (await tinyModel({ nHead: 4, nHeadKv: 2 })).path;
    q40 = (await tinyModel({ type: 'q4_0', nHead: 4, nHeadKv: 2 })).path;
  });
  after(() => {
    for (const t of open_) t.close();
  });
  const track = async (p: Promise<Trainer>) => {
    const t = await p;
    open_.push(t);
    return t;
  };

  test('checkpointed = monolithic: loss, every gradient and eval on F32 with GQA and packed windows (1e-5)', async () => {
    const mono = await track(open(f32, {}));
    const ck = await track(open(f32, { checkpointing: true }));
    for (const [i, w] of windows().entries()) {
      const a = grads(ck, (await ck.grad(w)).loss);
      const b = grads(mono, (await mono.grad(w)).loss);
      assertSame(a, b, 1e-5, `window ${i}`);
      const ea = await ck.evaluate([w]);
      const eb = await mono.evaluate([w]);
      assert.equal(ea.nTrained, eb.nTrained);
      assert.ok(
        Math.abs(ea.lossSum - eb.lossSum) <= 1e-5 * eb.lossSum,
        `eval ${ea.lossSum} vs ${eb.lossSum}`,
      );
    }
    // a whole optimizer step: the accumulated gradient and the update
    const ra = await ck.step(windows(), adamw({ lr: 1e-3, clipNorm: 0 }));
    const rb = await mono.step(windows(), adamw({ lr: 1e-3, clipNorm: 0 }));
    assertSame(grads(ck, ra.loss), grads(mono, rb.loss), 1e-5, 'step');
    const [d, k] = worst(params(ck), params(mono));
    assert.ok(d <= 1e-5, `after the step ${k} differs by ${d.toExponential(2)}`);
  });

  test('checkpointed = monolithic on Q4_0 (1e-4: the quantized matmuls quantize their activations)', async () => {
    const mono = await track(open(q40, {}));
    const ck = await track(open(q40, { checkpointing: true, lossChunk: 8 }));
    for (const [i, w] of windows().entries()) {
      const a = grads(ck, (await ck.grad(w)).loss);
      const b = grads(mono, (await mono.grad(w)).loss);
      assertSame(a, b, 1e-4, `q4_0 window ${i}`);
    }
  });

  test('chunked loss = one chunk: loss and gradients on F32 (1e-6), chunks of 5, 8, 7 and 64 rows', async () => {
    const one = await track(open(f32, { checkpointing: true, lossChunk: 0 }));
    // 27 trained rows in a 32-row bucket: 5 and 7 do not divide either
    const w = randomWindow(SEQ, 21, { maskFirst: 4 });
    const ref = grads(one, (await one.grad(w)).loss);
    const refEval = await one.evaluate([w]);
    for (const chunk of [5, 8, 7, 64]) {
      const tr = await track(open(f32, { checkpointing: true, lossChunk: chunk }));
      assertSame(grads(tr, (await tr.grad(w)).loss), ref, 1e-6, `lossChunk ${chunk}`);
      const e = await tr.evaluate([w]);
      assert.ok(
        Math.abs(e.lossSum - refEval.lossSum) <= 1e-6 * refEval.lossSum,
        `eval, lossChunk ${chunk}`,
      );
      tr.close();
      open_.pop();
    }
  });

  for (const [label, extra] of [
    ['monolithic', {}],
    ['checkpointed, lossChunk 6', { checkpointing: true, lossChunk: 6 }],
  ] as const) {
    test(`a micro-batch of N windows = N accumulated single windows (${label}; 1e-5)`, async () => {
      const single = await track(open(f32, { ...extra, microBatch: 1 }));
      const ref = await single.step(windows(), adamw({ lr: 1e-3, clipNorm: 0 }));
      const refGrads = grads(single, ref.loss);
      const refParams = params(single);
      // 3 windows in one graph, and as 2 + 1 (the last micro-batch smaller)
      for (const mb of [3, 2]) {
        const tr = await track(open(f32, { ...extra, microBatch: mb }));
        const r = await tr.step(windows(), adamw({ lr: 1e-3, clipNorm: 0 }));
        assert.equal(r.nTrained, ref.nTrained);
        assertSame(grads(tr, r.loss), refGrads, 1e-5, `microBatch ${mb}`);
        const [d, k] = worst(params(tr), refParams);
        assert.ok(
          d <= 1e-5,
          `microBatch ${mb}: after the step ${k} differs by ${d.toExponential(2)}`,
        );
        const e = await tr.evaluate(windows());
        const es = await single.evaluate(windows());
        assert.ok(Math.abs(e.lossSum - es.lossSum) <= 1e-5 * es.lossSum, `eval microBatch ${mb}`);
        tr.close();
        open_.pop();
      }
    });
  }

  test('memory() reports the checkpoint buffers: (layers + 3) x n_embd x seqLen x microBatch x 4 bytes', async () => {
    const tr = await track(open(f32, { checkpointing: true, microBatch: 2 }));
    const cpu = tr.memory().find((e) => e.device === 'CPU')!;
    assert.equal(cpu.checkpoint, (tr.info.nLayer + 3) * tr.info.nEmbd * SEQ * 2 * 4);
    assert.ok(cpu.compute > 0 && cpu.lora > 0);
    const mono = await track(open(f32, {}));
    assert.equal(mono.memory().find((e) => e.device === 'CPU')!.checkpoint, 0);
    // the placement report covers every graph of the checkpointed step (forward, head, 2 layers)
    const pc = tr.placement();
    const pm = mono.placement();
    assert.ok(pc.nNodes > pm.nNodes, `checkpointed ${pc.nNodes} nodes vs monolithic ${pm.nNodes}`);
  });

  test('bad memory-layout options are E_CONFIG errors naming the field', async () => {
    const bad: [Partial<OpenOptions>, RegExp][] = [
      [{ microBatch: 0 }, /microBatch/],
      [{ microBatch: 1.5 }, /microBatch/],
      [{ lossChunk: -1 }, /lossChunk/],
      [{ checkpointing: 'yes' as unknown as boolean }, /checkpointing/],
    ];
    for (const [o, re] of bad) {
      await assert.rejects(
        Trainer.open(openOptions({ modelPath: f32, seqLen: SEQ, ...o })),
        (e: { code?: string; message?: string }) =>
          e.code === 'E_CONFIG' && re.test(e.message ?? ''),
      );
    }
    const o = openOptions({ modelPath: f32, seqLen: SEQ }) as Partial<OpenOptions>;
    delete o.microBatch;
    await assert.rejects(Trainer.open(o as OpenOptions), /microBatch/);
  });
});
