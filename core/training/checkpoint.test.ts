import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHECKPOINT_FILE, readCheckpoint, writeCheckpoint } from './checkpoint.ts';

const meta = (step: number) => ({
  step,
  adamT: step,
  cursor: { epoch: 0, index: step * 2 },
  rngState: 99,
  trainedTokens: 10 * step,
  elapsedMs: 5,
  match: {
    modelFingerprint: 'x',
    rank: 4,
    alpha: 8,
    targets: ['attn_q'],
    seqLen: 16,
    windowsPerStep: 2,
    seed: 1,
  },
});

test('checkpoints round-trip, survive an interrupted write and detect corruption', () => {
  const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  try {
    const path = join(dir, CHECKPOINT_FILE);
    writeCheckpoint(path, meta(3), Buffer.from([1, 2, 3, 4, 5]));
    // a writer killed mid-write leaves only its temp file behind
    writeFileSync(`${path}.tmp-12345`, 'OVCKPT01\x10\x00');
    const r = readCheckpoint(dir);
    assert.equal(r.meta.step, 3);
    assert.deepEqual([...r.state], [1, 2, 3, 4, 5]);
    assert.deepEqual(r.meta.cursor, { epoch: 0, index: 6 });
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 2));
    assert.throws(() => readCheckpoint(path), /truncated/);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 0xff;
    writeFileSync(path, flipped);
    assert.throws(() => readCheckpoint(path), /checksum/);
    assert.throws(() => readCheckpoint(join(dir, 'missing')), /does not exist/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
