import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunMetric } from '../../../contract/index.ts';
import { formatDuration } from '../../../contract/index.ts';
import { progressLine } from './runs.ts';

const m = (step: number, time: number): RunMetric => ({
  step,
  epoch: 0,
  loss: 1.23456,
  lr: 1e-4,
  tokensPerSecond: 1520,
  tokens: 0,
  memoryBytes: null,
  gradNorm: null,
  time,
});

test('the progress line shows step, loss, tokens/s and an ETA from the recent pace', () => {
  assert.equal(progressLine({ totalSteps: 100 }, []), 'starting…');
  // 2 steps in 4 s -> 2 s/step; 90 steps left -> 3m00s
  assert.equal(
    progressLine({ totalSteps: 100 }, [m(8, 0), m(10, 4000)]),
    'step 10/100  loss 1.2346  1.5k tok/s  ETA 3m00s',
  );
  assert.match(progressLine({ totalSteps: 100 }, [m(1, 0)]), /ETA \?$/);
});

test('durations read as minutes or hours', () => {
  assert.equal(formatDuration(59), '0m59s');
  assert.equal(formatDuration(3 * 3600 + 5 * 60), '3h05m');
  assert.equal(formatDuration(Number.NaN), '?');
  // rounded before it is split: 1h59m59.6s is 2h00m, not "1h 60m"
  assert.equal(formatDuration(2 * 3600 - 0.4), '2h00m');
  assert.equal(formatDuration(3599.7), '1h00m');
});
