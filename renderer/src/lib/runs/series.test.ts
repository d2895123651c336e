import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunMetric } from '../../../../contract/index.ts';
import { etaSeconds } from '../../../../contract/index.ts';
import { lossSeries, mergeByStep, smooth, stepSeries, truncateAfter, xOf } from './series.ts';

const m = (step: number, loss = step): RunMetric => ({
  step,
  epoch: step / 10,
  loss,
  lr: 0,
  tokensPerSecond: 0,
  tokens: step * 100,
  memoryBytes: null,
  gradNorm: null,
  time: step * 1000,
});
const steps = (a: RunMetric[]) => a.map((x) => x.step);

test('merging live events with a backfill keeps one point per step, in order', () => {
  assert.deepEqual(steps(mergeByStep([m(1), m(2)], [m(3), m(4)])), [1, 2, 3, 4]);
  assert.deepEqual(steps(mergeByStep([m(3), m(4)], [m(1), m(2), m(3)])), [1, 2, 3, 4]);
  assert.deepEqual(steps(mergeByStep([m(1), m(3), m(5)], [m(2), m(3), m(4)])), [1, 2, 3, 4, 5]);
  assert.equal(mergeByStep([m(2, 9)], [m(2, 7)])[0]!.loss, 7, 'the newer value of a step wins');
  assert.deepEqual(steps(mergeByStep([], [m(1)])), [1]);
});

test('truncation drops the steps a resumed run repeats', () => {
  assert.deepEqual(steps(truncateAfter([m(1), m(2), m(3)], 1)), [1]);
  assert.deepEqual(steps(truncateAfter([m(1)], 5)), [1]);
});

test('smoothing is bias-corrected: a constant series stays constant', () => {
  assert.deepEqual(
    smooth([2, 2, 2], 0.9).map((v) => +v.toFixed(9)),
    [2, 2, 2],
  );
  assert.deepEqual(smooth([1, 3], 0), [1, 3]);
  const s = smooth([0, 10], 0.5);
  assert.ok(s[1]! > 0 && s[1]! < 10);
});

test('x values and ETA', () => {
  assert.equal(xOf(m(5), 'epoch'), 0.5);
  assert.equal(xOf(m(5), 'tokens'), 500);
  assert.equal(etaSeconds([m(1), m(3)], 10), 7);
  assert.equal(etaSeconds([m(1)], 10), null);
});

test('chart series come straight from the run metrics and evals', () => {
  const ms = [m(1, 4), { ...m(2, 2), gradNorm: 1.5 }, m(3, 1)];
  const [raw, smoothed, val] = lossSeries(ms, [{ step: 2, valLoss: 3, time: 0 }], 0);
  assert.deepEqual(raw!.points, [
    { x: 1, y: 4 },
    { x: 2, y: 2 },
    { x: 3, y: 1 },
  ]);
  assert.deepEqual(smoothed!.points, raw!.points, 'smoothing 0 is the raw line');
  assert.deepEqual(val!.points, [{ x: 2, y: 3 }]);
  assert.equal(val!.dots, true);
  // a norm stored before the trainer reported it (null) is left out, not drawn as 0
  assert.deepEqual(stepSeries(ms, 'gradNorm', 'norm', '#000')[0]!.points, [{ x: 2, y: 1.5 }]);
  assert.deepEqual(
    stepSeries(ms, 'lr', 'lr', '#000')[0]!.points.map((p) => p.x),
    [1, 2, 3],
  );
});
