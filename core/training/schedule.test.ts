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
  assert.deepEqual([...a].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(epochOrder(10, 5, 0), a);
  assert.notDeepEqual(epochOrder(10, 5, 1), a);
  const t = takeWindows(10, 5, { epoch: 0, index: 8 }, 4);
  assert.deepEqual(t.next, { epoch: 1, index: 2 });
  assert.deepEqual(t.ids.slice(0, 2), [a[8], a[9]]);
});
