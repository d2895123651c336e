// npm run bench:merge — the native merge (docs/native.md "Merging") on a generated llama-shaped
// Q4_K model: an adapter of rank 16 on all 7 targets (random non-zero A and B) merged at each
// type; time of the merge phase (dequantize + B·A + F16 write) and of llama_model_quantize,
// output size. Shapes as bench:memory (the same cached files): --size 0.1b | 0.5b (default).
//   npm run bench:merge -- [--size 0.5b] [--threads 2] [--types F16,Q8_0,Q4_K_M]
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  MERGE_TYPES,
  Trainer,
  mergeAdapter,
  peakRss,
  type MergeType,
} from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { openOptions } from '../native/helpers.ts';

const SIZES = {
  '0.1b': { nEmbd: 768, nLayer: 12, nFf: 2048, nHead: 12, nHeadKv: 4 },
  '0.5b': { nEmbd: 1024, nLayer: 24, nFf: 4096, nHead: 16, nHeadKv: 8 },
} as const;
function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const size = (arg('size') ?? '0.5b') as keyof typeof SIZES;
const THREADS = Number(arg('threads') ?? 2);
const TYPES = (arg('types') ?? 'F16,Q8_0,Q4_K_M').split(',') as MergeType[];
for (const t of TYPES) if (!MERGE_TYPES.includes(t)) throw new Error(`unknown type ${t}`);
if (!SIZES[size]) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);

const dir = mkdtempSync(join(os.tmpdir(), 'overnight-bench-merge-'));
try {
  const model = await tinyModel({
    arch: 'llama',
    type: 'q4_k',
    vocab: 'llama-spm',
    ...SIZES[size],
    nCtx: 4096,
    name: `overnight-bench-memory-${size}`,
  });
  const adapter = join(dir, 'adapter.gguf');
  const tr = await Trainer.open(
    openOptions({ modelPath: model.path, seqLen: 32, rank: 16, alpha: 32, threads: THREADS }),
  );
  try {
    let s = 1;
    for (const l of tr.loras()) {
      const b = tr.getTensor(l.name, 'b');
      for (let i = 0; i < b.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        b[i] = (s / 4294967296 - 0.5) * 0.02;
      }
      tr.setTensor(l.name, 'b', b);
    }
    await tr.saveAdapter(adapter);
  } finally {
    tr.close();
  }
  console.log(
    `bench:merge — llama Q4_K ${size} (${(model.fileSize / 2 ** 20).toFixed(0)} MiB), rank 16 x 7 targets, ${THREADS} threads`,
  );
  console.log(
    '| type | merged / copied tensors | merge phase s | quantize phase s | total s | output MiB |',
  );
  console.log(
    '|------|-------------------------|---------------|------------------|---------|------------|',
  );
  for (const type of TYPES) {
    const t0 = performance.now();
    let mergeEnd = 0;
    const job = mergeAdapter(
      {
        basePath: model.path,
        adapterPath: adapter,
        outPath: join(dir, `m-${type}.gguf`),
        scale: 1,
        type,
        threads: THREADS,
        checkSpace: true,
        overwrite: true,
      },
      (p) => {
        if (p.phase === 'merge' && p.done === p.total) mergeEnd = performance.now();
      },
    );
    const r = await job.promise;
    const t1 = performance.now();
    console.log(
      `| ${type.padEnd(6)} | ${`${r.nMerged} / ${r.nCopied}`.padEnd(23)} | ${((mergeEnd - t0) / 1000).toFixed(2).padStart(13)} | ${(type === 'F16' ? '-' : ((t1 - mergeEnd) / 1000).toFixed(2)).padStart(16)} | ${((t1 - t0) / 1000).toFixed(2).padStart(7)} | ${(r.bytes / 2 ** 20).toFixed(1).padStart(10)} |`,
    );
    rmSync(join(dir, `m-${type}.gguf`), { force: true });
  }
  console.log(
    `peak RSS of this process (trainer open + merges): ${(peakRss() / 2 ** 20).toFixed(0)} MiB`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
