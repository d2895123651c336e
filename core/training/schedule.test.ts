import { test } from 'node:test';
import assert from 'node:assert/strict';
import { epochOrder, lrAt, takeWindows } from './schedule.ts';

test('lr schedules: warm-up, constant, linear and cosine with a floor', () => {
  const base = { lr: 1, warmupSteps: 4, minLr: 0.1, totalSteps: 14 };
  assert.equal(lrAt({ ...base, type: 'constant' }, 0), 0.25);
  assert.equal(lrAt({ ...base, type: 'constant' }, 3), 1);
  assert.equal(lrAt({ ...base, type: 'constant' }, 13), 1);
  assert.equal(lrAt({ ...base, type: 'linear' }, 4), 1);
  assert.ok(Math.abs(lrAt({ ...base, type: 'linear' }, 9) - 0.55) < 1e-12);
  assert.ok(Math.abs(lrAt({ ...base, type: 'cosine' }, 9) - 0.55) < 1e-12);
  assert.equal(lrAt({ ...base, type: 'cosine' }, 14), 0.1);
});

test('data order is a deterministic permutation per epoch and the cursor crosses epochs', () => {
  const a = epochOrder(10, 5, 0);
  assert.deepEqual(
    [...a].sort((x, y) => x - y),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual(epochOrder(10, 5, 0), a);
  assert.notDeepEqual(epochOrder(10, 5, 1), a);
  const t = takeWindows(10, 5, { epoch: 0, index: 8 }, 4);
  assert.deepEqual(t.next, { epoch: 1, index: 2 });
  assert.deepEqual(t.ids.slice(0, 2), [a[8], a[9]]);
});

test('warm-up starts at lr/warmupSteps, not 0, and reaches lr on its last step', () => {
  // The contract (runConfigFields.warmupSteps) and docs/runs.md promise exactly this: no
  // optimizer step is wasted at learning rate 0.
  for (const type of ['constant', 'linear', 'cosine'] as const) {
    const s = { type, lr: 2e-4, warmupSteps: 5, minLr: 0, totalSteps: 50 };
    const warm = Array.from({ length: 5 }, (_, k) => lrAt(s, k));
    assert.deepEqual(
      warm,
      [1, 2, 3, 4, 5].map((k) => (2e-4 * k) / 5),
      `${type}: step k of the warm-up trains at lr * k / warmupSteps`,
    );
    assert.ok(warm[0]! > 0, `${type}: the first step does not train at 0`);
    assert.equal(warm[4], 2e-4, `${type}: the last warm-up step trains at lr`);
    assert.equal(lrAt(s, 5), 2e-4, `${type}: the decay starts from lr`);
  }
  // One warm-up step is a full-rate first step; none is the schedule itself.
  assert.equal(lrAt({ type: 'cosine', lr: 1, warmupSteps: 1, minLr: 0, totalSteps: 10 }, 0), 1);
  assert.equal(lrAt({ type: 'constant', lr: 1, warmupSteps: 0, minLr: 0, totalSteps: 10 }, 0), 1);
});
