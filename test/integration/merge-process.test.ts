// The merged-model export's process (core/export/merge-process.ts): the native merge runs in a
// forked child; progress arrives per tensor; a cancel stops it within one tensor; a child that
// does not answer the cancel (stopped with SIGSTOP, as a hung one) is killed after killAfterMs
// and its partial files are removed by the parent; native errors become OvernightErrors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { OvernightError } from '../../contract/index.ts';
import { runMergeProcess } from '../../core/export/merge-process.ts';
import { Trainer, type MergeOptions, type MergeProgress } from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { openOptions, tempDir } from '../native/helpers.ts';

async function randomAdapter(modelPath: string, path: string): Promise<void> {
  const tr = await Trainer.open(
    openOptions({
      modelPath,
      seqLen: 32,
      targets: ['attn_q', 'ffn_down'],
      rank: 4,
      alpha: 8,
      threads: 2,
    }),
  );
  try {
    for (const l of tr.loras()) tr.setTensor(l.name, 'b', tr.getTensor(l.name, 'b').fill(0.05));
    await tr.saveAdapter(path);
  } finally {
    tr.close();
  }
}

describe('merge process', () => {
  let tmp: { dir: string; cleanup: () => void };
  let basePath: string;
  let adapterPath: string;
  let otherAdapter: string;
  const opts = (dir: string, o: Partial<MergeOptions> = {}): MergeOptions => {
    mkdirSync(dir, { recursive: true });
    return {
      basePath,
      adapterPath,
      outPath: join(dir, 'merged.gguf'),
      scale: 1,
      type: 'Q4_K_M',
      threads: 1,
      checkSpace: true,
      overwrite: false,
      ...o,
    };
  };
  before(async () => {
    tmp = tempDir();
    basePath = (await tinyModel({ type: 'q4_k_m' })).path;
    adapterPath = join(tmp.dir, 'adapter.gguf');
    await randomAdapter(basePath, adapterPath);
    otherAdapter = join(tmp.dir, 'other.gguf');
    await randomAdapter((await tinyModel({ type: 'q4_0' })).path, otherAdapter);
  });
  after(() => tmp.cleanup());

  test('a merge completes in the child with progress for both phases', async () => {
    const dir = join(tmp.dir, 'ok');
    const seen: MergeProgress[] = [];
    const r = await runMergeProcess(opts(dir), {
      signal: new AbortController().signal,
      onProgress: (p) => seen.push(p),
    });
    assert.equal(r.nMerged, 4);
    assert.deepEqual(readdirSync(dir), ['merged.gguf']);
    assert.ok(seen.some((p) => p.phase === 'merge') && seen.some((p) => p.phase === 'quantize'));
  });

  test('cancel: the child stops within one tensor, nothing is left', async () => {
    const dir = join(tmp.dir, 'cancel');
    const ctrl = new AbortController();
    await assert.rejects(
      runMergeProcess(opts(dir), {
        signal: ctrl.signal,
        onProgress: (p) => {
          if (p.phase === 'quantize') ctrl.abort();
        },
      }),
      (e: unknown) =>
        e instanceof OvernightError && e.code === 'CANCELLED' && /^cancelled$/.test(e.message),
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a hung child (SIGSTOP) is killed after killAfterMs; the parent removes its partials', async () => {
    const dir = join(tmp.dir, 'hung');
    const ctrl = new AbortController();
    let pid = 0;
    let stopped = false;
    await assert.rejects(
      runMergeProcess(opts(dir), {
        signal: ctrl.signal,
        killAfterMs: 500,
        onSpawn: (p) => (pid = p),
        onProgress: (p) => {
          if (p.phase === 'merge' && p.done === 5 && !stopped) {
            stopped = true;
            process.kill(pid, 'SIGSTOP');
            ctrl.abort();
          }
        },
      }),
      (e: unknown) =>
        e instanceof OvernightError &&
        e.code === 'CANCELLED' &&
        /its process was killed/.test(e.message),
    );
    assert.ok(stopped);
    assert.deepEqual(readdirSync(dir), [], 'the partial the killed child was writing is gone');
  });

  test('native errors become OvernightErrors (adapter for another base: INVALID_FILE)', async () => {
    const dir = join(tmp.dir, 'mismatch');
    await assert.rejects(
      runMergeProcess(opts(dir, { adapterPath: otherAdapter }), {
        signal: new AbortController().signal,
        onProgress: () => {},
      }),
      (e: unknown) =>
        e instanceof OvernightError &&
        e.code === 'INVALID_FILE' &&
        /is \[256, \d+\] in the base model, but the adapter's lora_a is \[64, 4\]/.test(e.message),
    );
    assert.deepEqual(readdirSync(dir), []);
  });
});
