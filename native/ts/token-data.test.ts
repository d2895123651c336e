import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenDataReader, TokenDataWriter, buildWindows, writeTokenData } from './token-data.ts';

test('token data round-trips windows with segments and validates the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  try {
    const samples = [
      { tokens: [1, 10, 11, 12, 2], trainMask: [false, false, true, true, true] },
      { tokens: [1, 20, 21, 2], trainMask: [false, false, true, true] },
      { tokens: [1, 30, 31, 32, 33, 2], trainMask: [false, false, false, true, true, true] },
    ];
    const packed = buildWindows(samples, 10, 'pack');
    assert.equal(packed.length, 2);
    assert.deepEqual([...packed[0]!.segments!], [0, 0, 0, 0, 0, 1, 1, 1, 1, -1]);
    assert.deepEqual([...packed[0]!.labels], [-1, 11, 12, 2, -1, -1, 21, 2, -1, -1]);
    const single = buildWindows(samples, 8, 'single');
    assert.equal(single.length, 3);
    const p = join(dir, 'd.tok');
    assert.equal(writeTokenData(p, 10, packed, true), 2);
    const r = new TokenDataReader(p);
    assert.equal(r.nWindows, 2);
    assert.equal(r.seqLen, 10);
    assert.ok(r.hasSegments);
    assert.deepEqual(r.read(1), packed[1]);
    assert.equal(r.trainedTokens(0), 5);
    assert.throws(() => r.read(2), /out of range/);
    r.close();
    writeFileSync(join(dir, 'bad.tok'), readFileSync(p).subarray(0, 100));
    assert.throws(() => new TokenDataReader(join(dir, 'bad.tok')), /truncated or corrupt/);
    writeFileSync(join(dir, 'junk.tok'), 'hello');
    assert.throws(
      () => new TokenDataReader(join(dir, 'junk.tok')),
      /not an Overnight token data file/,
    );
    const w = new TokenDataWriter(join(dir, 'x.tok'), 4);
    assert.throws(
      () => w.append({ tokens: new Int32Array(3), labels: new Int32Array(4) }),
      /seqLen 4/,
    );
    w.abort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
