/**
 * Dataset benchmark: `npm run bench:datasets [-- --mb 200 --records 5000]`.
 *  1. import MB/s: a generated JSONL of ~200 MB (OpenAI chat records of varied length) through
 *     the whole import pipeline (read, validate, dedupe, normalise, hash, store);
 *  2. tokenization records/s: render + tokenize + mask with a real vocabulary (tiny Qwen2 GGUF,
 *     151k-token BPE vocab, the Qwen2.5 chat template);
 *  3. peak RSS of the process (getrusage maxRSS), the proof that import is bounded in memory.
 * Prints a table and one JSON line (for CI logs).
 */
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import { importDataset } from '../../core/datasets/import.ts';
import { RecordEncoder } from '../../core/datasets/tokenize.ts';
import { loadVocab } from '../../core/datasets/vocab.ts';
import type { NormalizedRecord } from '../../core/datasets/types.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '200' }, records: { type: 'string', default: '5000' } },
});
const targetBytes = Number(values.mb) * 1024 * 1024;
const tokenRecords = Number(values.records);

const words =
  'the a model learns from examples that show what to say when asked about data training tokens night sleep GPU adapter loss curve chat template mask'.split(
    ' ',
  );
/** A deterministic pseudo-random record (xorshift), 1-4 turns, 20-400 words per reply. */
function makeRecord(i: number): string {
  let x = (i + 1) * 2654435761;
  const rnd = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const text = (n: number) => Array.from({ length: n }, () => words[rnd(words.length)]).join(' ');
  const messages: { role: string; content: string }[] = [];
  if (rnd(4) === 0) messages.push({ role: 'system', content: 'You are helpful.' });
  const turns = 1 + rnd(4);
  for (let t = 0; t < turns; t++) {
    messages.push({ role: 'user', content: `#${i}.${t} ${text(10 + rnd(60))}?` });
    messages.push({ role: 'assistant', content: text(20 + rnd(380)) });
  }
  return JSON.stringify({ messages });
}

async function generate(path: string): Promise<{ bytes: number; records: number }> {
  const out = createWriteStream(path);
  let bytes = 0;
  let i = 0;
  while (bytes < targetBytes) {
    const line = makeRecord(i++) + '\n';
    bytes += Buffer.byteLength(line);
    if (!out.write(line)) await new Promise<void>((r) => out.once('drain', r));
  }
  await new Promise<void>((r) => out.end(r));
  return { bytes, records: i };
}

const mib = (n: number) => n / 1024 / 1024;
const peakRssMiB = () => process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB

async function main() {
  const dir = mkdtempSync(join(os.tmpdir(), 'overnight-bench-'));
  try {
    const src = join(dir, 'big.jsonl');
    let t = performance.now();
    const gen = await generate(src);
    const genS = (performance.now() - t) / 1000;
    const rssBeforeImport = peakRssMiB();
    console.log(
      `generated ${mib(gen.bytes).toFixed(0)} MiB, ${gen.records} records in ${genS.toFixed(1)} s (peak RSS so far ${rssBeforeImport.toFixed(0)} MiB)`,
    );

    t = performance.now();
    const cpu0 = process.cpuUsage();
    const r = await importDataset({ path: src, dataDir: join(dir, 'data') });
    const importS = (performance.now() - t) / 1000;
    const cpu = process.cpuUsage(cpu0);
    // CPU seconds too: on a shared machine the wall clock measures the neighbours as well.
    const importCpuS = (cpu.user + cpu.system) / 1e6;
    if (r.status !== 'imported') throw new Error('bench import was refused');
    const importMBs = mib(statSync(src).size) / importS;
    const rssAfterImport = peakRssMiB();

    const model = await tinyModel({ vocab: 'qwen2' });
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const vocab = await loadVocab(llama, model.path);
    const enc = new RecordEncoder(vocab, 'assistant');
    const recs: NormalizedRecord[] = Array.from(
      { length: tokenRecords },
      (_, i) => JSON.parse(makeRecord(i)) as NormalizedRecord,
    );
    let tokens = 0;
    t = performance.now();
    for (const rec of recs) tokens += enc.encode(rec).tokens.length;
    const tokS = (performance.now() - t) / 1000;
    await vocab.dispose();

    const result = {
      importMiB: Math.round(mib(gen.bytes)),
      importRecords: r.counts.valid,
      importSeconds: +importS.toFixed(2),
      importMiBPerSecond: +importMBs.toFixed(1),
      importCpuSeconds: +importCpuS.toFixed(2),
      importMiBPerCpuSecond: +(mib(statSync(src).size) / importCpuS).toFixed(1),
      tokenizeRecords: tokenRecords,
      tokenizeRecordsPerSecond: Math.round(tokenRecords / tokS),
      tokensPerSecond: Math.round(tokens / tokS),
      peakRssAfterImportMiB: Math.round(rssAfterImport),
      peakRssMiB: Math.round(peakRssMiB()),
      cpu: os.cpus()[0]?.model ?? '?',
      cores: os.cpus().length,
    };
    console.log(
      `import      ${result.importMiB} MiB, ${result.importRecords} records in ${result.importSeconds} s = ${result.importMiBPerSecond} MiB/s (${result.importMiBPerCpuSecond} MiB per CPU second)`,
    );
    console.log(
      `tokenize    ${result.tokenizeRecords} records (${tokens} tokens) = ${result.tokenizeRecordsPerSecond} records/s, ${result.tokensPerSecond} tokens/s`,
    );
    console.log(
      `peak RSS    ${result.peakRssAfterImportMiB} MiB after import, ${result.peakRssMiB} MiB at the end (with the vocab loaded)`,
    );
    console.log(JSON.stringify(result));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
