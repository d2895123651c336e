// Issue #8 item 11: cancel must stop a step that is already computing, through ggml's abort
// callback (ov_abort_cb), not only between steps. The window is sized so that one uncancelled
// step takes seconds on the 2-core development machine (24 layers, 512 tokens, 32k vocabulary);
// the cancel is sent while that single window's graph is running.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeError, Trainer } from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, randomWindow } from './helpers.ts';

const SEQ = 512;
let tr: Trainer;

before(async () => {
  const m = await tinyModel({ type: 'f32', nEmbd: 256, nFf: 1024, nLayer: 24 });
  tr = await Trainer.open(openOptions({ modelPath: m.path, seqLen: SEQ, rank: 8, threads: 2 }));
});
after(() => tr?.close());

test('cancel returns E_CANCELLED from inside a multi-second step within 2 s and applies nothing', async () => {
  const w = randomWindow(SEQ, 5);
  const opt = adamw({ lr: 1e-3, clipNorm: 0 });
  let t0 = performance.now();
  await tr.step([w], opt);
  const full = performance.now() - t0;

  const before = tr.getState();
  t0 = performance.now();
  const p = tr.step([w], opt);
  // well inside the step (a quarter of an uncancelled one), so the graph is computing
  await sleep(Math.min(500, full / 4));
  const sent = performance.now();
  tr.cancel();
  let err: unknown = null;
  try {
    const r = await p;
    assert.fail(
      `the step completed despite the cancel (${(performance.now() - t0).toFixed(0)} ms, loss ${r.loss})`,
    );
  } catch (e) {
    err = e;
  }
  const took = performance.now() - sent;
  tr.cancel(false);
  assert.ok(err instanceof NativeError && err.code === 'E_CANCELLED', String(err));
  assert.ok(took < 2000, `cancel took ${took.toFixed(0)} ms`);
  assert.ok(took < full / 2, `cancel took ${took.toFixed(0)} ms of a ${full.toFixed(0)} ms step`);
  // the optimizer never ran: parameters, moments and the AdamW step count are unchanged
  const afterCancel = tr.getState();
  assert.equal(afterCancel.adamT, before.adamT);
  assert.ok(afterCancel.state.equals(before.state));
});
