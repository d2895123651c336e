import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runConfigSchema } from '../../contract/index.ts';
import {
  checkpointsToDelete,
  decideAfterCrash,
  earlyStopStart,
  effectiveConfig,
  endOf,
  nextState,
  observeEval,
  resumePlan,
  type Overrides,
} from './lifecycle.ts';

const cfg = (over: object = {}) => runConfigSchema.parse({ model: 'm', dataset: 'd', ...over });

test('a queued run starts, a running run completes, pauses or cancels only through the trainer', () => {
  assert.equal(nextState('queued', { type: 'start' }), 'running');
  assert.equal(nextState('running', { type: 'done', reason: 'x' }), 'completed');
  assert.equal(nextState('running', { type: 'stopped', intent: 'pause' }), 'paused');
  assert.equal(nextState('running', { type: 'stopped', intent: 'cancel' }), 'cancelled');
  assert.throws(
    () => nextState('running', { type: 'cancel' }),
    /cannot cancel a run that is running/,
  );
});

test('paused, failed and interrupted runs resume to the queue; completed ones do not', () => {
  for (const s of ['paused', 'failed', 'interrupted'] as const)
    assert.equal(nextState(s, { type: 'resume' }), 'queued');
  assert.throws(
    () => nextState('completed', { type: 'resume' }),
    (e: Error & { code?: string }) => e.code === 'CONFLICT',
  );
  assert.equal(nextState('running', { type: 'engineRestarted' }), 'interrupted');
  assert.throws(() => nextState('cancelled', { type: 'start' }));
});

test('resume is idempotent: queued or running runs are followed, completed ones are done, cancelled refused', () => {
  for (const s of ['paused', 'failed', 'interrupted'] as const)
    assert.equal(resumePlan(s), 'enqueue');
  assert.equal(resumePlan('queued'), 'follow');
  assert.equal(resumePlan('running'), 'follow');
  assert.equal(resumePlan('completed'), 'finished');
  assert.throws(
    () => resumePlan('cancelled'),
    (e: Error & { code?: string }) =>
      e.code === 'CONFLICT' && /cancelled: cancelling is final/.test(e.message),
  );
});

test('a crash is retried until maxRetries, then the run stays failed', () => {
  const c = cfg({ maxRetries: 2 });
  const crash = { message: 'signal SIGKILL', oom: false, step: 7 };
  const first = decideAfterCrash(c, {}, 0, crash);
  assert.equal(first.retry, true);
  assert.match(first.reason, /died at step 7: signal SIGKILL.*retry 1 of 2/);
  assert.equal(decideAfterCrash(c, {}, 1, crash).retry, true);
  const last = decideAfterCrash(c, {}, 2, crash);
  assert.equal(last.retry, false);
  assert.match(last.reason, /Gave up after 2 automatic retries/);
});

test('out of memory falls back straight to shorter sequences, never unchanged', () => {
  const c = cfg({ effectiveBatch: 8, sequenceLength: 256 });
  const oom = { message: 'alloc failed', oom: true, step: 3 };
  const a = decideAfterCrash(c, {}, 0, oom);
  // One window per micro-batch already: the first fallback is the sequence length.
  assert.deepEqual(a.overrides, { sequenceLength: 128 });
  assert.match(a.reason, /Out of memory at step 3.*sequence length 128/);
  assert.doesNotMatch(a.reason, /micro-batch|accumulation/);
  const b = decideAfterCrash(c, a.overrides, 1, oom);
  assert.deepEqual(b.overrides, { sequenceLength: 64 });
  const d = decideAfterCrash(c, b.overrides, 2, oom);
  assert.equal(d.retry, false);
  assert.match(d.reason, /Nothing smaller/);
  const off = decideAfterCrash(cfg({ oomFallback: false }), {}, 0, oom);
  assert.equal(off.retry, false);
  assert.match(off.reason, /allow the automatic fallback/);
  assert.doesNotMatch(off.reason, /micro-batch|accumulation/);
});

test('an override stored by an earlier version (gradAccumulation) is ignored', () => {
  const c = cfg({ effectiveBatch: 8, sequenceLength: 256 });
  const old = { gradAccumulation: 8, sequenceLength: 128 } as Overrides;
  const eff = effectiveConfig(c, old);
  assert.equal(eff.sequenceLength, 128);
  assert.equal('gradAccumulation' in eff, false);
});

test('early stopping fires after patience evaluations without improvement and remembers the best', () => {
  const c = { earlyStopping: true, patience: 2, minDelta: 0.01 };
  let s = { ...earlyStopStart, improved: false, stop: false };
  const seen: boolean[] = [];
  for (const [step, loss] of [
    [10, 2.0],
    [20, 1.5],
    [30, 1.495],
    [40, 1.6],
  ] as const) {
    s = observeEval(s, step, loss, c);
    seen.push(s.stop);
  }
  assert.deepEqual(seen, [false, false, false, true]);
  assert.equal(s.bestStep, 20);
  assert.equal(s.bestLoss, 1.5);
  assert.equal(observeEval(earlyStopStart, 1, Number.NaN, c).improved, false);
  const off = observeEval({ bestLoss: 1, bestStep: 1, badEvals: 5 }, 9, 2, {
    ...c,
    earlyStopping: false,
  });
  assert.equal(off.stop, false);
});

test('retention keeps the newest N checkpoints and the best one', () => {
  assert.deepEqual(checkpointsToDelete([10, 20, 30, 40, 50], 2, 20), [10, 30]);
  assert.deepEqual(checkpointsToDelete([10, 20], 3, null), []);
  assert.deepEqual(checkpointsToDelete([50, 10, 30], 1, 50), [10, 30]);
});

test('end states: the trainer result read against what the supervisor asked for', () => {
  const done = (status: 'completed' | 'cancelled' | 'paused', step = 12) => ({
    done: { status, step },
    error: null,
  });
  assert.deepEqual(endOf(done('completed'), null, null), {
    state: 'completed',
    reason: 'Completed 12 steps.',
    adapter: 'trainer',
    finished: true,
  });
  const early = endOf(done('paused'), 'early-stop', 'Early stopping: no gain.');
  assert.equal(early.state, 'completed');
  assert.ok(early.state === 'completed' && early.adapter === 'checkpoint');
  assert.equal(early.state === 'completed' && early.reason, 'Early stopping: no gain.');
  assert.equal(endOf(done('paused'), 'pause', null).state, 'paused');
  assert.equal(endOf(done('paused'), 'shutdown', null).state, 'interrupted');
  assert.equal(endOf(done('cancelled'), 'shutdown', null).state, 'interrupted');
  assert.deepEqual(endOf(done('cancelled'), 'cancel', null), {
    state: 'cancelled',
    reason: 'Cancelled by the user.',
    finished: true,
  });
  const crash = endOf({ done: null, error: null }, null, null);
  assert.deepEqual(crash, {
    state: 'crash',
    error: { code: 'E_CRASH', message: 'the training process ended without a result' },
  });
  const oom = { done: null, error: { code: 'E_OOM' as const, message: 'no memory' } };
  assert.equal(endOf(oom, null, null).state, 'crash', 'OOM goes to decideAfterCrash');
  assert.equal(endOf(oom, 'shutdown', null).state, 'interrupted');
  const bad = { done: null, error: { code: 'E_CONFIG' as const, message: 'rank 0' } };
  assert.deepEqual(endOf(bad, null, null), {
    state: 'failed',
    reason: 'E_CONFIG: rank 0',
    finished: true,
  });
});
