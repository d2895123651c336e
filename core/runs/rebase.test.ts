import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCheckpoint, writeCheckpoint } from '../training/checkpoint.ts';
import { checkpointAtSeqLen, checkpointSeqLen, rebaseCheckpoint } from './rebase.ts';

test('a rebased checkpoint keeps the state and step, records the new length and moves the cursor proportionally', () => {
  const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  try {
    const src = join(dir, 'a.ovck');
    const state = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
    const match = {
      modelFingerprint: 'f',
      rank: 4,
      alpha: 8,
      targets: ['attn_q'],
      seqLen: 128,
      windowsPerStep: 2,
      seed: 1,
    };
    writeCheckpoint(
      src,
      {
        step: 12,
        adamT: 12,
        cursor: { epoch: 1, index: 30 },
        rngState: 7,
        trainedTokens: 999,
        elapsedMs: 5,
        match,
      },
      state,
    );
    assert.equal(checkpointSeqLen(src), 128);
    const dest = join(dir, 'b.ovck');
    rebaseCheckpoint(src, dest, { seqLen: 64, oldWindows: 40, newWindows: 80 });
    const b = readCheckpoint(dest);
    assert.deepEqual(b.state, state);
    assert.equal(b.meta.step, 12);
    assert.equal(b.meta.adamT, 12);
    assert.equal(b.meta.rngState, 7);
    assert.deepEqual(b.meta.cursor, { epoch: 1, index: 60 });
    assert.deepEqual(b.meta.match, { ...match, seqLen: 64 });
    assert.equal(checkpointSeqLen(src), 128, 'the original is untouched');

    // the checkpoint to resume from: itself at its own length, a rebased copy at another
    const windows = { oldWindows: 40, newWindows: 40 };
    const other = join(dir, 'sub', 'c.ovck');
    assert.equal(checkpointAtSeqLen(src, other, { seqLen: 128, ...windows }), src);
    assert.ok(!existsSync(other), 'nothing written when the length matches');
    assert.equal(checkpointAtSeqLen(src, other, { seqLen: 32, ...windows }), other);
    assert.equal(checkpointSeqLen(other), 32);
    // Same length, input written again with fewer windows (packed): the cursor follows.
    const repacked = join(dir, 'sub', 'd.ovck');
    const same = { seqLen: 128, oldWindows: 40, newWindows: 20 };
    assert.equal(checkpointAtSeqLen(src, repacked, same), repacked);
    assert.deepEqual(readCheckpoint(repacked).meta.cursor, { epoch: 1, index: 15 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
