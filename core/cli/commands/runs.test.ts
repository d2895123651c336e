import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunMetric } from '../../../contract/index.ts';
import { formatDuration } from '../../../contract/index.ts';
import { estimateLine, peakLine, progressLine } from './runs.ts';

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

test('train shows the estimate before it starts and the measured peak after', () => {
  const estimate = {
    memory: {
      totalBytes: 900e6,
      parts: {},
      device: 'CPU (system RAM)',
      deviceFreeBytes: 8e9,
      verdict: 'fits' as const,
      advice: [],
    },
    checkpointing: false,
    trainWindows: 40,
    fillRatio: 0.987,
    stepsPerEpoch: 10,
    totalSteps: 20,
    time: null,
  };
  assert.equal(
    estimateLine({ estimate, totalSteps: 20 }),
    'estimate: about 900.0 MB of 8.0 GB free on CPU (system RAM) (fits); activation checkpointing off; 20 steps, 40 windows 98.7% full',
  );
  assert.equal(estimateLine({ estimate: null, totalSteps: 5 }), 'estimate: none stored; 5 steps');
  const steps = [{ ...m(1, 0), memoryBytes: 1000e6 }, { ...m(2, 1), memoryBytes: 700e6 }, m(3, 2)];
  assert.equal(
    peakLine({ estimate }, steps),
    'measured peak memory: 1.0 GB (estimate 900.0 MB, -10% off)',
  );
  assert.equal(peakLine({ estimate }, [m(1, 0)]), 'measured peak memory: no step reported one');
});
