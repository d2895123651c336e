/**
 * scripts/test-summary.mjs reads the counts check:cuda reports (and gates on: a skipped GPU test
 * fails the check) from a real node:test run: a generated file with two passing tests, one
 * skipped and one failing, run through the spec reporter (what check:cuda uses) and TAP.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
// @ts-expect-error: plain .mjs script without types
import { testCounts } from '../../scripts/test-summary.mjs';

const dir = mkdtempSync(join(tmpdir(), 'ov-test-summary-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'sample.test.mjs');
writeFileSync(
  file,
  [
    "import { test } from 'node:test';",
    "test('a', () => {});",
    "test('b', () => {});",
    "test('c', { skip: 'not here' }, () => {});",
    "test('d', () => { throw new Error('boom'); });",
  ].join('\n'),
);

function runWith(reporter: string): string {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // else the child reports to this runner instead of printing
  const r = spawnSync(process.execPath, ['--test', `--test-reporter=${reporter}`, file], {
    encoding: 'utf8',
    env,
  });
  assert.equal(r.status, 1, 'one test fails');
  return r.stdout;
}

describe('testCounts (check:cuda summary)', () => {
  for (const reporter of ['spec', 'tap']) {
    test(`reads the ${reporter} reporter's summary`, () => {
      assert.deepEqual(testCounts(runWith(reporter)), { tests: 4, pass: 2, fail: 1, skipped: 1 });
    });
  }
  test('NaN when there is no summary', () => {
    const c = testCounts('nothing ran\n') as Record<string, number>;
    assert.ok(Number.isNaN(c.pass) && Number.isNaN(c.skipped));
  });
});
