import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradAccumulation } from '../../contract/index.ts';
import { parseConfig } from './validate.ts';

const refused = (over: object, message: RegExp) =>
  assert.throws(
    () => parseConfig({ model: 'm', dataset: 'd', ...over }),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'INVALID_INPUT');
      assert.match(e.message, message);
      return true;
    },
  );

test('optimizer fields: clipping at 1, no weight decay, betas 0.9 / 0.999 unless given', () => {
  const c = parseConfig({ model: 'm', dataset: 'd' });
  assert.equal(c.gradClipNorm, 1);
  assert.equal(c.weightDecay, 0);
  assert.equal(c.adamBeta1, 0.9);
  assert.equal(c.adamBeta2, 0.999);
  const given = parseConfig({
    model: 'm',
    dataset: 'd',
    gradClipNorm: 0,
    weightDecay: 0.01,
    adamBeta1: 0,
    adamBeta2: 0.95,
  });
  assert.deepEqual(
    [given.gradClipNorm, given.weightDecay, given.adamBeta1, given.adamBeta2],
    [0, 0.01, 0, 0.95],
  );
});

test('optimizer fields out of range are refused with the field and the rule', () => {
  refused({ gradClipNorm: -1 }, /^gradClipNorm: gradClipNorm must be 0 \(no clipping\) or more$/m);
  refused({ gradClipNorm: 'high' }, /^gradClipNorm: gradClipNorm must be a number$/m);
  refused({ gradClipNorm: 2e6 }, /^gradClipNorm: gradClipNorm must be at most 1000000$/m);
  refused({ weightDecay: -0.1 }, /^weightDecay: weightDecay must be 0 or more$/m);
  refused({ weightDecay: 2 }, /^weightDecay: weightDecay must be at most 1$/m);
  refused({ adamBeta1: 1 }, /^adamBeta1: adamBeta1 must be below 1$/m);
  refused({ adamBeta1: -0.5 }, /^adamBeta1: adamBeta1 must be 0 or more$/m);
  refused({ adamBeta2: 1.5 }, /^adamBeta2: adamBeta2 must be below 1$/m);
  refused({ adamBeta2: null }, /^adamBeta2: adamBeta2 must be a number$/m);
  // Every problem at once, one line each.
  assert.throws(
    () => parseConfig({ model: 'm', dataset: 'd', adamBeta1: 1, weightDecay: -1 }),
    (e: Error) => e.message.split('\n').length === 3,
  );
});

test('micro-batch: effectiveBatch must be whole micro-batches; the refusal names both and the nearest choices', () => {
  const c = parseConfig({ model: 'm', dataset: 'd' });
  assert.equal(c.microBatch, 1);
  assert.equal(c.checkpointing, 'auto');
  const ok = parseConfig({ model: 'm', dataset: 'd', effectiveBatch: 8, microBatch: 4 });
  assert.equal(gradAccumulation(ok), 2);
  refused(
    { effectiveBatch: 6, microBatch: 4 },
    /^effectiveBatch: effectiveBatch \(6\) must be a multiple of microBatch \(4\): .*choose 4 or 8, or another microBatch$/m,
  );
  refused({ effectiveBatch: 2, microBatch: 4 }, /choose 4, or another microBatch$/m);
  refused({ microBatch: 0 }, /^microBatch: microBatch must be at least 1$/m);
  refused({ checkpointing: 'yes' }, /^checkpointing: /m);
  // A config of an earlier version (gradAccumulation = effectiveBatch, one window per micro-batch).
  const old = parseConfig({ model: 'm', dataset: 'd', effectiveBatch: 8, gradAccumulation: 8 });
  assert.deepEqual([old.microBatch, gradAccumulation(old)], [1, 8]);
});
