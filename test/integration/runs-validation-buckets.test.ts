/**
 * Issue #8 item 1, as a user meets it: a chat dataset whose answers are mostly 2-3 words with a
 * few long ones, sequence length 256, a validation share of 0.3 and a validation pass after every
 * step. Short and long answers put the training and the validation windows in different
 * output-row buckets, so the trainer evaluates a bucket before or after it trains on it — the
 * order that used to abort the training process in get_rows (SIGABRT) at step 1. Through the
 * whole engine (real datasets domain, real training process), the run must complete with a
 * validation loss at every step and no retry.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Engine } from '../../core/engine.ts';
import { chatLine, openEngineWithChat, runToEnd, type EngineWithChat } from './engine-fixture.ts';

const words = 'amber basil cedar dune ember fjord grove heath inlet juniper kelp lark moss'.split(
  ' ',
);

/** Record i: a short question; most answers 2-3 words, every fifth 40-90 words. */
function record(i: number): string {
  const long = i % 5 === 4;
  const n = long ? 40 + ((i * 17) % 51) : 2 + (i % 2);
  const answer = Array.from({ length: n }, (_, k) => words[(i + k * 3) % words.length]).join(' ');
  return chatLine(`Name ${n} words for item ${i}.`, answer);
}

let fx: EngineWithChat;
let engine: Engine;
let modelId: string;
let datasetId: string;

before(async () => {
  fx = await openEngineWithChat(
    'mixed.jsonl',
    Array.from({ length: 40 }, (_, i) => record(i)),
  );
  ({ engine, modelId, datasetId } = fx);
});
after(() => fx?.close());

describe('validation on fresh output-row buckets (real trainer)', { timeout: 600_000 }, () => {
  it('mixed answer lengths, seq 256, validation 0.3 after every step: completes with no retry', async () => {
    const steps = 4;
    const run = await runToEnd(engine, {
      model: modelId,
      dataset: datasetId,
      preset: 'custom',
      loraRank: 4,
      loraAlpha: 8,
      learningRate: 1e-3,
      lrSchedule: 'constant',
      warmupSteps: 0,
      effectiveBatch: 1,
      sequenceLength: 256,
      validationShare: 0.3,
      evalInterval: 1,
      maxSteps: steps,
      checkpointInterval: 1000,
      earlyStopping: false,
      finalAdapter: 'last',
      threads: 2,
    });
    const id = run.id;
    assert.equal(run.state, 'completed', run.stateReason ?? '');
    assert.equal(run.retries, 0, 'no retry: the first training process ran the whole run');
    const metrics = await engine.dispatcher.call('runs.metrics', { id });
    assert.deepEqual(
      metrics.map((m) => m.step),
      Array.from({ length: steps }, (_, i) => i + 1),
    );
    const { evals } = await engine.dispatcher.call('runs.show', { id });
    for (let s = 1; s <= steps; s++) {
      const e = evals.find((x) => x.step === s);
      assert.ok(e, `a validation loss at step ${s}`);
      assert.ok(Number.isFinite(e.valLoss), `finite validation loss at step ${s}: ${e.valLoss}`);
    }
  });
});
