// Issue #8 item 1: the forward-only graph (evaluate) and the training graph (step, grad) of an
// output-row bucket share tensor objects. Whichever ran first used to leave its addresses on the
// shared tensors, and the other graph then ran on them (GGML_ASSERT in get_rows, or silently
// corrupted activations). Every order of evaluate / step / grad / probe, for every bucket size,
// must give exactly what the same operation gives as the first call of a fresh trainer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Trainer } from '../../native/ts/binding.ts';
import type { StepResult } from '../../native/ts/binding.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, randomWindow } from './helpers.ts';

const SEQ = 64;
// ov_bucket: the trained count rounded up to a multiple of max(16, SEQ/8), at most SEQ
const BUCKETS = [16, 32, 48, 64];
const OPT = adamw({ lr: 1e-2, clipNorm: 0 });

type State = { state: Buffer; adamT: number };
interface Ref {
  e0: number; // evaluate at S0
  l1: number; // step at S0: loss, grad norm, state after
  n1: number;
  s1: State;
  e1: number; // evaluate at S1
  l2: number; // step at S1
  n2: number;
  s2: State;
}

function sameState(a: State, b: State, what: string): void {
  assert.equal(a.adamT, b.adamT, `${what}: AdamW step count`);
  assert.ok(
    a.state.equals(b.state),
    `${what}: LoRA/optimizer state differs from a fresh trainer's`,
  );
}

function sameNum(a: number, b: number, what: string): void {
  assert.ok(Number.isFinite(a), `${what}: ${a} is not finite`);
  assert.equal(a, b, `${what}: ${a} vs fresh trainer ${b}`);
}

describe('bucket graphs allocate consistently in any order (issue #8 item 1)', () => {
  let modelPath: string;
  let s0: State;
  const windows: TokenWindow[] = BUCKETS.map((b, i) =>
    // b - 3 trained tokens -> bucket b
    randomWindow(SEQ, 20 + i, { maskFirst: SEQ - 1 - (b - 3) }),
  );
  const refs: Ref[] = [];
  const open: Trainer[] = [];

  async function fresh(st: State): Promise<Trainer> {
    const tr = await Trainer.open(
      openOptions({
        modelPath,
        seqLen: SEQ,
        rank: 4,
        alpha: 8,
        seed: 5,
        threads: 2,
      }),
    );
    open.push(tr);
    tr.setState(st.state, st.adamT);
    return tr;
  }

  before(async () => {
    modelPath = (await tinyModel({ type: 'f32', nHeadKv: 2 })).path;
    const init = await Trainer.open(
      openOptions({
        modelPath,
        seqLen: SEQ,
        rank: 4,
        alpha: 8,
        seed: 5,
        threads: 2,
      }),
    );
    // non-zero B, so that A has a gradient and a step changes the loss
    let s = 777;
    for (const l of init.loras()) {
      const b = init.getTensor(l.name, 'b');
      for (let i = 0; i < b.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        b[i] = (s / 4294967296 - 0.5) * 0.2;
      }
      init.setTensor(l.name, 'b', b);
    }
    s0 = init.getState();
    init.close();
    // references: each value is the first operation of its own fresh trainer (evaluate alone;
    // step, step on one graph; evaluate alone at the state after one step)
    for (const w of windows) {
      const ra = await fresh(s0);
      const e0 = (await ra.evaluate([w])).lossSum;
      ra.close();
      const rb = await fresh(s0);
      const st1 = await rb.step([w], OPT);
      const s1 = rb.getState();
      const st2 = await rb.step([w], OPT);
      const s2 = rb.getState();
      rb.close();
      const rc = await fresh(s1);
      const e1 = (await rc.evaluate([w])).lossSum;
      rc.close();
      refs.push({ e0, l1: st1.loss, n1: st1.gradNorm, s1, e1, l2: st2.loss, n2: st2.gradNorm, s2 });
    }
  });
  after(() => {
    for (const t of open) {
      try {
        t.close();
      } catch {
        /* already closed */
      }
    }
  });

  const checkStep = (r: StepResult, l: number, n: number, what: string) => {
    sameNum(r.loss, l, `${what} loss`);
    sameNum(r.gradNorm, n, `${what} gradNorm`);
  };

  test('the buckets are the ones ov_bucket makes for this sequence length', async () => {
    // every window has its own bucket: b - 3 trained tokens
    for (const [i, w] of windows.entries()) {
      assert.equal(w.labels.filter((l) => l >= 0).length, BUCKETS[i]! - 3);
    }
    assert.ok(
      refs.every((r) => r.e0 !== r.e1 && r.l1 !== r.l2),
      'a step must change the loss',
    );
  });

  test('evaluate -> step on a fresh trainer, every bucket', async () => {
    const tr = await fresh(s0);
    for (const [i, w] of windows.entries()) {
      const r = refs[i]!;
      const what = `bucket ${BUCKETS[i]}`;
      tr.setState(s0.state, s0.adamT);
      sameNum((await tr.evaluate([w])).lossSum, r.e0, `${what} evaluate`);
      checkStep(await tr.step([w], OPT), r.l1, r.n1, `${what} step`);
      sameState(tr.getState(), r.s1, `${what} after step`);
    }
    tr.close();
  });

  test('evaluate -> grad -> step on a fresh trainer, every bucket', async () => {
    const tr = await fresh(s0);
    for (const [i, w] of windows.entries()) {
      const r = refs[i]!;
      const what = `bucket ${BUCKETS[i]}`;
      tr.setState(s0.state, s0.adamT);
      sameNum((await tr.evaluate([w])).lossSum, r.e0, `${what} evaluate`);
      // one window: grad's mean loss and gradient are the step's
      checkStep(await tr.grad(w), r.l1, r.n1, `${what} grad`);
      checkStep(await tr.step([w], OPT), r.l1, r.n1, `${what} step`);
      sameState(tr.getState(), r.s1, `${what} after step`);
    }
    tr.close();
  });

  test('step -> evaluate -> step, and with a probe in between, every bucket', async () => {
    for (const probe of [false, true]) {
      const tr = await fresh(s0);
      for (const [i, w] of windows.entries()) {
        const r = refs[i]!;
        const what = `bucket ${BUCKETS[i]}${probe ? ' (probe between)' : ''}`;
        tr.setState(s0.state, s0.adamT);
        checkStep(await tr.step([w], OPT), r.l1, r.n1, `${what} step 1`);
        if (probe) {
          const p = await tr.probe(
            { prompt: w.tokens.subarray(0, 8), maxTokens: 3, temperature: 0, seed: 0 },
            null,
          );
          assert.ok(p.tokens.length <= 3);
        }
        sameNum((await tr.evaluate([w])).lossSum, r.e1, `${what} evaluate`);
        checkStep(await tr.step([w], OPT), r.l2, r.n2, `${what} step 2`);
        sameState(tr.getState(), r.s2, `${what} after step 2`);
      }
      tr.close();
    }
  });

  test('operations on alternating buckets, each from S0, match the fresh references', async () => {
    const tr = await fresh(s0);
    // a fixed interleaving: evaluate-first and step-first on different buckets, back and forth
    const plan: ['e' | 's' | 'g', number][] = [
      ['e', 3],
      ['e', 0],
      ['s', 1],
      ['e', 2],
      ['s', 0],
      ['s', 3],
      ['e', 1],
      ['g', 2],
      ['s', 2],
      ['e', 3],
      ['s', 1],
      ['e', 0],
      ['g', 3],
      ['e', 2],
      ['s', 3],
      ['e', 1],
    ];
    for (const [op, i] of plan) {
      const r = refs[i]!;
      const what = `${op} on bucket ${BUCKETS[i]}`;
      tr.setState(s0.state, s0.adamT);
      if (op === 'e') sameNum((await tr.evaluate([windows[i]!])).lossSum, r.e0, what);
      else if (op === 'g') checkStep(await tr.grad(windows[i]!), r.l1, r.n1, what);
      else {
        checkStep(await tr.step([windows[i]!], OPT), r.l1, r.n1, what);
        sameState(tr.getState(), r.s1, what);
      }
    }
    // a multi-window step whose windows fall into different buckets
    tr.setState(s0.state, s0.adamT);
    const multi = await tr.step(windows, OPT);
    const ref = await fresh(s0);
    const want = await ref.step(windows, OPT);
    checkStep(multi, want.loss, want.gradNorm, 'multi-bucket step');
    sameState(tr.getState(), ref.getState(), 'multi-bucket step');
    ref.close();
    tr.close();
  });
});
