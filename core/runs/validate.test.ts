import { test } from 'node:test';
import assert from 'node:assert/strict';
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
