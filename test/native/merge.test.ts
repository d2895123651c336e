// Issue #13, merged model (native part): mergeAdapter writes W + scale·(alpha/r)·B·A for every
// tensor the adapter touches, copies every other tensor byte for byte, keeps the metadata,
// quantizes through llama_model_quantize without requantizing untouched tensors, cancels within
// one tensor, and never leaves a partial file (cancel, disk full, bad input). This process loads
// only the native addon (node-llama-cpp checks are in merge-llama.test.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Trainer, mergeAdapter, type MergeOptions } from '../../native/ts/binding.ts';
import { GgmlType } from '../fixtures/gguf-writer.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { openOptions, tempDir } from './helpers.ts';
import {
  expectedMerge,
  gguf,
  isQuantized,
  relMaxErr,
  relRmsErr,
  runMerge,
  tensorBytes,
  tensorF32,
} from './merge-helpers.ts';

const TARGETS = ['attn_q', 'attn_v', 'ffn_down'] as const;

/** An adapter with random non-zero A and B (B is zero after init) on these targets. */
async function randomAdapter(modelPath: string, path: string, seed: number): Promise<void> {
  const tr = await Trainer.open(
    openOptions({ modelPath, seqLen: 32, targets: TARGETS, rank: 8, alpha: 16, threads: 2 }),
  );
  try {
    let s = seed >>> 0;
    for (const l of tr.loras()) {
      const b = tr.getTensor(l.name, 'b');
      for (let i = 0; i < b.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        b[i] = (s / 4294967296 - 0.5) * 0.6;
      }
      tr.setTensor(l.name, 'b', b);
    }
    await tr.saveAdapter(path, { 'overnight.test': 'merge' });
  } finally {
    tr.close();
  }
}

describe('mergeAdapter (native)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let basePath: string;
  let adapterPath: string;
  let otherAdapter: string;
  const opts = (o: Partial<MergeOptions> & Pick<MergeOptions, 'outPath'>): MergeOptions => ({
    basePath,
    adapterPath,
    scale: 0.7,
    type: 'F16',
    threads: 2,
    checkSpace: true,
    overwrite: false,
    ...o,
  });
  const dirOf = (name: string): string => {
    const d = join(tmp.dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  };

  before(async () => {
    tmp = tempDir();
    basePath = (await tinyModel({ type: 'q4_k_m' })).path;
    adapterPath = join(tmp.dir, 'adapter.gguf');
    await randomAdapter(basePath, adapterPath, 7);
    // an adapter for another base (64-wide model): every shape differs
    otherAdapter = join(tmp.dir, 'other-adapter.gguf');
    await randomAdapter((await tinyModel({ type: 'q4_0' })).path, otherAdapter, 9);
  });
  after(() => tmp.cleanup());

  test('F16: merged tensors = W + scale*(alpha/r)*B·A, others byte-identical, metadata kept', async () => {
    const dir = dirOf('f16');
    const outPath = join(dir, 'merged.gguf');
    const run = await runMerge(opts({ outPath }));
    assert.equal(run.error, null, String(run.error));
    assert.deepEqual(readdirSync(dir), ['merged.gguf'], 'only the final file remains');
    const base = gguf(basePath);
    const ad = gguf(adapterPath);
    const out = gguf(outPath);
    const touched = new Set(
      ad.tensors.filter((t) => t.name.endsWith('.lora_a')).map((t) => t.name.slice(0, -7)),
    );
    assert.equal(touched.size, TARGETS.length * 2, 'three targets on two layers');
    assert.deepEqual(
      out.tensors.map((t) => [t.name, t.shape]),
      base.tensors.map((t) => [t.name, t.shape]),
    );
    assert.equal(run.result!.nMerged, touched.size);
    assert.equal(run.result!.nCopied, base.tensors.length - touched.size);
    let worst = 0;
    for (const t of base.tensors) {
      const o = out.tensors.find((x) => x.name === t.name)!;
      if (!touched.has(t.name)) {
        assert.equal(o.type, t.type, `${t.name} keeps its type`);
        assert.ok(tensorBytes(out, t.name).equals(tensorBytes(base, t.name)), `${t.name} bytes`);
        continue;
      }
      assert.equal(o.type, GgmlType.F16, `${t.name} is stored F16`);
      const want = expectedMerge(base, ad, t.name, 0.7);
      const err = relMaxErr(tensorF32(out, t.name), want);
      const delta = relMaxErr(tensorF32(base, t.name), want);
      worst = Math.max(worst, err);
      assert.ok(err < 1e-3, `${t.name}: merged vs W + scale·(alpha/r)·B·A: ${err}`);
      assert.ok(
        delta > 50 * err,
        `${t.name}: the delta (${delta}) must dominate the error (${err})`,
      );
    }
    console.log(`F16 merge: worst max-relative error of a merged tensor ${worst.toExponential(2)}`);
    for (const [k, v] of base.metadata) {
      if (k === 'general.file_type') continue;
      assert.deepEqual(out.metadata.get(k), v, `metadata ${k}`);
    }
    assert.equal(out.metadata.get('general.file_type')!.value, 1, 'MOSTLY_F16');
    assert.equal(out.metadata.get('overnight.merge.scale')!.value, Math.fround(0.7));
    const merges = run.progress.filter((p) => p.phase === 'merge');
    assert.deepEqual(
      merges.map((p) => p.done),
      base.tensors.map((_, i) => i + 1),
      'one progress event per tensor',
    );
    assert.ok(merges.every((p) => p.total === base.tensors.length));
  });

  // [type, relative RMS bound, the main type of its merged tensors, llama_ftype]
  for (const [type, tol, mainType, ftype] of [
    ['Q8_0', 0.01, 'Q8_0', 7],
    ['Q6_K', 0.03, 'Q6_K', 18],
    ['Q5_K_M', 0.05, 'Q5_K', 17],
    ['Q4_K_M', 0.08, 'Q4_K', 15],
  ] as const) {
    test(`${type}: llama_model_quantize quantizes merged tensors only; untouched ones are copied`, async () => {
      const dir = dirOf(type);
      const outPath = join(dir, 'merged.gguf');
      const run = await runMerge(opts({ outPath, type }));
      assert.equal(run.error, null, String(run.error));
      assert.deepEqual(readdirSync(dir), ['merged.gguf'], 'no intermediate or partial left');
      const base = gguf(basePath);
      const ad = gguf(adapterPath);
      const out = gguf(outPath);
      const touched = new Set(
        ad.tensors.filter((t) => t.name.endsWith('.lora_a')).map((t) => t.name.slice(0, -7)),
      );
      const types = new Set<string>();
      let worst = 0;
      for (const t of base.tensors) {
        const o = out.tensors.find((x) => x.name === t.name)!;
        if (!touched.has(t.name)) {
          assert.equal(o.type, t.type, `${t.name} keeps its type ${GgmlType[t.type]}`);
          assert.ok(tensorBytes(out, t.name).equals(tensorBytes(base, t.name)), `${t.name} bytes`);
          continue;
        }
        assert.ok(isQuantized(o.type), `${t.name} is quantized (${GgmlType[o.type]})`);
        types.add(GgmlType[o.type]!);
        const want = expectedMerge(base, ad, t.name, 0.7);
        const err = relRmsErr(tensorF32(out, t.name), want);
        const delta = relRmsErr(tensorF32(base, t.name), want);
        worst = Math.max(worst, err);
        assert.ok(err < tol, `${t.name} (${GgmlType[o.type]}): relative RMS error ${err}`);
        assert.ok(delta > 3 * err, `${t.name}: delta ${delta} vs quantization error ${err}`);
      }
      if (type === 'Q8_0' || type === 'Q6_K') assert.deepEqual([...types], [mainType]);
      else assert.ok(types.has(mainType), [...types].join(','));
      console.log(
        `${type} merge: merged tensor types ${[...types].join('+')}, worst relative RMS error ${worst.toFixed(4)}, ${run.result!.bytes} bytes`,
      );
      assert.equal(out.metadata.get('general.file_type')!.value, ftype);
      const q = run.progress.filter((p) => p.phase === 'quantize');
      assert.ok(q.length >= base.tensors.length, `quantize progress events: ${q.length}`);
      assert.equal(q.at(-1)!.done, q.at(-1)!.total);
    });
  }

  for (const phase of ['merge', 'quantize'] as const) {
    test(`cancel during the ${phase} phase stops within one tensor and leaves no file`, async () => {
      const dir = dirOf(`cancel-${phase}`);
      const outPath = join(dir, 'merged.gguf');
      const run = await runMerge(
        opts({ outPath, type: 'Q4_K_M' }),
        (p) => p.phase === phase && p.done === 3,
      );
      assert.equal(run.error?.code, 'E_CANCELLED', String(run.error));
      const last = run.progress.at(-1)!;
      assert.deepEqual([last.phase, last.done], [phase, 3], 'no tensor finished after the cancel');
      assert.deepEqual(readdirSync(dir), [], 'no final, partial or intermediate file');
    });
  }

  test('errors: bad and truncated GGUF, adapter for another base, existing output, options', async () => {
    const dir = dirOf('errors');
    const outPath = join(dir, 'merged.gguf');
    const truncated = join(tmp.dir, 'truncated.gguf');
    const full = readFileSync(basePath);
    writeFileSync(truncated, full.subarray(0, Math.floor(full.length * 0.6)));
    const garbage = join(tmp.dir, 'garbage.gguf');
    writeFileSync(garbage, Buffer.from('definitely not a gguf file'));

    let r = await runMerge(opts({ outPath, basePath: truncated }));
    assert.equal(r.error?.code, 'E_MODEL');
    assert.match(
      r.error!.message,
      /truncated: tensor \S+ ends at byte \d+ but the file has \d+ bytes/,
    );
    r = await runMerge(opts({ outPath, basePath: garbage }));
    assert.equal(r.error?.code, 'E_MODEL');
    assert.match(r.error!.message, /not a valid GGUF/);
    r = await runMerge(opts({ outPath, adapterPath: garbage }));
    assert.equal(r.error?.code, 'E_ADAPTER');
    r = await runMerge(opts({ outPath, adapterPath: otherAdapter }));
    assert.equal(r.error?.code, 'E_MISMATCH');
    assert.match(
      r.error!.message,
      /blk\.\d\.\w+\.weight is \[256, \d+\] in the base model, but the adapter's lora_a is \[64, 8\] and lora_b \[8, \d+\]/,
    );
    assert.deepEqual(readdirSync(dir), [], 'nothing written for bad input');

    // a throwing progress callback stops the merge and becomes its error
    const thrower = mergeAdapter(opts({ outPath }), (p) => {
      if (p.done === 2) throw new Error('boom in the UI');
    });
    await assert.rejects(
      thrower.promise,
      (e: Error & { code?: string }) =>
        e.code === 'E_CALLBACK' && /onProgress threw: boom in the UI/.test(e.message),
    );
    assert.deepEqual(readdirSync(dir), [], 'nothing left by the stopped merge');

    writeFileSync(outPath, 'keep me');
    r = await runMerge(opts({ outPath }));
    assert.equal(r.error?.code, 'E_EXISTS');
    assert.equal(readFileSync(outPath, 'utf8'), 'keep me');
    r = await runMerge(opts({ outPath, overwrite: true }));
    assert.equal(r.error, null, String(r.error));
    assert.ok(readFileSync(outPath).length > 1e6);

    const bad: [Partial<Record<keyof MergeOptions, unknown>>, RegExp][] = [
      [{ type: 'Q3_K' }, /type must be one of F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M \(got "Q3_K"\)/],
      [{ scale: Number.NaN }, /scale must be a finite number/],
      [{ threads: -1 }, /threads must be an integer >= 0/],
      [{ checkSpace: undefined }, /checkSpace must be a boolean/],
      [{ overwrite: 'yes' }, /overwrite must be a boolean/],
      [{ basePath: join(tmp.dir, 'missing.gguf') }, /basePath .*missing\.gguf does not exist/],
      [{ outPath: '' }, /outPath must be a non-empty path/],
    ];
    for (const [o, re] of bad) {
      assert.throws(
        () => mergeAdapter({ ...opts({ outPath }), ...o } as MergeOptions, () => {}),
        (e: Error & { code?: string }) => e.code === 'E_INPUT' && re.test(e.message),
        JSON.stringify(o),
      );
    }
  });

  describe('disk full (a small tmpfs)', () => {
    let mnt: string | null = null;
    let skip: string | false = false;
    before(() => {
      const d = dirOf('tmpfs');
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', d], { stdio: 'pipe' });
        mnt = d;
      } catch (e) {
        skip = `cannot mount a tmpfs here (needs root): ${String(e).split('\n')[0]}`;
      }
    });
    after(() => {
      if (mnt) execFileSync('umount', [mnt]);
    });

    test('the pre-check refuses before writing anything', async (t) => {
      if (skip) return t.skip(skip);
      const r = await runMerge(opts({ outPath: join(mnt!, 'merged.gguf') }));
      assert.equal(r.error?.code, 'E_DISK_FULL', String(r.error));
      assert.match(
        r.error!.message,
        /needs about [\d.]+ MiB .* [\d.]+ MiB are free; nothing was written/,
      );
      assert.deepEqual(readdirSync(mnt!), []);
      assert.equal(r.progress.length, 0);
    });

    test('a write that fails mid-way (pre-check off) is a clean E_DISK_FULL with no partial file', async (t) => {
      if (skip) return t.skip(skip);
      const outPath = join(mnt!, 'merged.gguf');
      // 2 MiB: the F16 file fails in its first tensor
      let r = await runMerge(opts({ outPath, type: 'F16', checkSpace: false }));
      assert.equal(r.error?.code, 'E_DISK_FULL', String(r.error));
      const m = /while writing .*merged\.gguf\.partial \(([\d.]+) of ([\d.]+) MiB written\)/.exec(
        r.error!.message,
      );
      assert.ok(m && Number(m[1]) > 1 && Number(m[1]) < Number(m[2]), r.error!.message);
      console.log(`F16 mid-way: ${r.error!.message}`);
      assert.deepEqual(readdirSync(mnt!), [], 'F16: no partial file');
      // 20 MiB: the F16 intermediate (~13 MiB) fits, llama_model_quantize's output does not
      execFileSync('mount', ['-o', 'remount,size=20m', mnt!]);
      r = await runMerge(opts({ outPath, type: 'Q8_0', checkSpace: false }));
      assert.equal(r.error?.code, 'E_DISK_FULL', String(r.error));
      assert.match(r.error!.message, /filled up while quantizing into .*merged\.gguf\.partial/);
      assert.ok(
        r.progress.some((p) => p.phase === 'quantize'),
        'it failed in the quantize phase',
      );
      console.log(`Q8_0 mid-way: ${r.error!.message}`);
      assert.deepEqual(readdirSync(mnt!), [], 'Q8_0: no intermediate or partial file');
    });

    test('enough space: the pre-check lets a merge through', async (t) => {
      if (skip) return t.skip(skip);
      execFileSync('mount', ['-o', 'remount,size=64m', mnt!]);
      const outPath = join(mnt!, 'merged.gguf');
      const r = await runMerge(opts({ outPath, type: 'Q8_0' }));
      assert.equal(r.error, null, String(r.error));
      assert.ok(r.result!.neededBytes > r.result!.bytes, 'the estimate bounds the final size');
      assert.deepEqual(readdirSync(mnt!), ['merged.gguf']);
      copyFileSync(outPath, join(tmp.dir, 'from-tmpfs.gguf'));
    });
  });
});
