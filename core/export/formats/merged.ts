/**
 * Merged model: the run's adapter merged into its base and written as one standalone GGUF at the
 * requested type (F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M) by the native merge (native/src/merge.cpp,
 * docs/native.md "Merging"), in its own child process (merge-process.ts). Tensors the adapter
 * does not touch are copied, not requantized. With `lmstudio`, the file goes into LM Studio's
 * models-folder layout: `<outDir>/<publisher>/<name>/<name>-<type>.gguf`.
 * Verified: the file's structure against the base and the adapter; the merged model loaded in
 * node-llama-cpp answers the run's probe prompts greedily, compared with base + the run's
 * adapter (must be identical for F16); perplexity of the merged model next to base + adapter on
 * the run's validation split.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  rmdirSync,
} from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import type { LlamaModel, Token } from 'node-llama-cpp';
import type { ExportCheck, ExportRequest, MergeType } from '../../../contract/index.ts';
import { windowSamples } from '../../eval/service.ts';
import { checkName, inside } from '../files.ts';
import {
  shellQuote,
  type ExportContext,
  type ExportFormatModule,
  type Written,
} from '../format.ts';
import { kvNumber, readGgufHeader, type GgufHeader, type GgufTensor } from '../gguf.ts';
import { runMergeProcess } from '../merge-process.ts';

/** The LM Studio publisher folder when none is given. */
export const DEFAULT_PUBLISHER = 'overnight';

/** llama_ftype of each type (what general.file_type says). */
const FILE_TYPES: Record<MergeType, number> = { F16: 1, Q8_0: 7, Q6_K: 18, Q5_K_M: 17, Q4_K_M: 15 };

/** Validation samples scored for the perplexity check (each needs full-vocabulary probabilities). */
export const PERPLEXITY_SAMPLES = 32;

/** ggml types: [elements per block, bytes per block] (ggml.h), for byte-exact tensor sizes. */
const BLOCKS: Record<number, [number, number]> = {
  0: [1, 4], // F32
  1: [1, 2], // F16
  2: [32, 18], // Q4_0
  3: [32, 20], // Q4_1
  6: [32, 22], // Q5_0
  7: [32, 24], // Q5_1
  8: [32, 34], // Q8_0
  10: [256, 84], // Q2_K
  11: [256, 110], // Q3_K
  12: [256, 144], // Q4_K
  13: [256, 176], // Q5_K
  14: [256, 210], // Q6_K
  30: [1, 2], // BF16
};
const TYPE_NAMES: Record<number, string> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  6: 'Q5_0',
  7: 'Q5_1',
  8: 'Q8_0',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  14: 'Q6_K',
  30: 'BF16',
};
const typeName = (t: number): string => TYPE_NAMES[t] ?? `type ${t}`;

/** Exact byte size of a tensor; null for a type this table lacks. */
function tensorSize(t: GgufTensor): number | null {
  const b = BLOCKS[t.type];
  if (!b) return null;
  return (t.ne.reduce((a, x) => a * x, 1) / b[0]) * b[1];
}

/** Whether two tensors' data are byte-identical (streamed in 4 MiB chunks). */
function sameBytes(a: GgufHeader, ta: GgufTensor, b: GgufHeader, tb: GgufTensor): boolean {
  const size = tensorSize(ta);
  if (size === null || size !== tensorSize(tb)) return false;
  const fa = openSync(a.path, 'r');
  const fb = openSync(b.path, 'r');
  try {
    const chunk = 4 << 20;
    const ba = Buffer.alloc(Math.min(chunk, size));
    const bb = Buffer.alloc(Math.min(chunk, size));
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      if (readSync(fa, ba, 0, n, a.dataOffset + ta.offset + off) !== n) return false;
      if (readSync(fb, bb, 0, n, b.dataOffset + tb.offset + off) !== n) return false;
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

function requestType(req: ExportRequest | undefined): MergeType {
  return req?.type ?? 'Q4_K_M';
}

/** The adapter's target tensors: "<w>.lora_a" -> "<w>". */
function touched(adapter: GgufHeader): Set<string> {
  return new Set(
    adapter.tensors.filter((t) => t.name.endsWith('.lora_a')).map((t) => t.name.slice(0, -7)),
  );
}

/** The merged file against the base and the adapter: names, shapes, types, copied bytes. */
export function mergedFileCheck(ctx: ExportContext, path: string, type: MergeType): ExportCheck {
  const h = readGgufHeader(path);
  const hit = touched(ctx.adapter);
  const problems: string[] = [];
  const mergedTypes = new Map<string, number>();
  let copied = 0;
  if (h.tensors.length !== ctx.base.tensors.length)
    problems.push(`${h.tensors.length} tensors, the base has ${ctx.base.tensors.length}`);
  for (const t of ctx.base.tensors) {
    const u = h.tensors.find((x) => x.name === t.name);
    if (!u) {
      problems.push(`tensor ${t.name} is missing`);
      continue;
    }
    if (u.ne.join(',') !== t.ne.join(',')) {
      problems.push(`tensor ${t.name} has shape [${u.ne}], the base [${t.ne}]`);
      continue;
    }
    if (hit.has(t.name)) {
      const ok = type === 'F16' ? u.type === 1 : u.type !== 0 && u.type !== 1 && u.type !== 30;
      if (!ok) problems.push(`merged tensor ${t.name} is ${typeName(u.type)}, expected ${type}`);
      mergedTypes.set(typeName(u.type), (mergedTypes.get(typeName(u.type)) ?? 0) + 1);
    } else if (u.type !== t.type) {
      problems.push(
        `${t.name} was not merged but changed type (${typeName(t.type)} -> ${typeName(u.type)})`,
      );
    } else if (!sameBytes(h, u, ctx.base, t)) {
      problems.push(`${t.name} was not merged but its bytes differ from the base`);
    } else copied++;
  }
  for (const name of hit)
    if (!ctx.base.tensors.some((t) => t.name === name)) problems.push(`the base has no ${name}`);
  const ft = kvNumber(h, 'general.file_type');
  if (ft !== FILE_TYPES[type])
    problems.push(`general.file_type is ${ft}, expected ${FILE_TYPES[type]} (${type})`);
  const types = [...mergedTypes].map(([k, n]) => `${k} ×${n}`).join(', ');
  return {
    name: `the file has every base tensor: the ${hit.size} the adapter touches merged (${type}), the others copied byte for byte`,
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${hit.size} merged (${types}), ${copied} copied unchanged from the base`
        : problems.slice(0, 8).join('; ') +
          (problems.length > 8 ? ` (+${problems.length - 8} more)` : ''),
  };
}

interface Sample {
  tokens: number[];
  labels: number[];
}

/** Mean negative log-likelihood (natural log) of the labelled tokens, as the eval service scores. */
async function meanNll(
  model: LlamaModel,
  adapter: string | null,
  samples: Sample[],
): Promise<{ nll: number; n: number }> {
  const longest = Math.max(8, ...samples.map((s) => s.tokens.length));
  const ctx = await model.createContext({
    contextSize: Math.min(model.trainContextSize, longest + 8),
    threads: 1,
    ...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
  });
  try {
    const seq = ctx.getSequence();
    const full = { temperature: 1, topK: 0, topP: 1, minP: 0 };
    let nll = 0;
    let n = 0;
    for (const s of samples) {
      await seq.clearHistory();
      const input = s.tokens.map((t, i) =>
        s.labels[i]! >= 0
          ? ([t as Token, { generateNext: { probabilities: true, options: full } }] as const)
          : (t as Token),
      );
      const out = await seq.controlledEvaluate(
        input as Parameters<typeof seq.controlledEvaluate>[0],
      );
      for (let i = 0; i < s.tokens.length; i++) {
        if (s.labels[i]! < 0) continue;
        const p = out[i]?.next.probabilities?.get(s.labels[i] as Token) ?? 0;
        nll -= Math.log(Math.max(p, 1e-30));
        n++;
      }
    }
    return { nll, n };
  } finally {
    await ctx.dispose();
  }
}

/** The run's validation split (the trainer's own file), as scored samples; null without one. */
function validationSamples(ctx: ExportContext): { samples: Sample[]; of: number } | null {
  const file = join(ctx.run.folder, 'validation.tokens');
  if (!existsSync(file)) return null;
  const all = windowSamples(file, 1 << 20);
  return { samples: all.slice(0, PERPLEXITY_SAMPLES), of: all.length };
}

async function modelChecks(
  ctx: ExportContext,
  path: string,
  type: MergeType,
): Promise<ExportCheck[]> {
  const probes = await ctx.probes.list();
  const want = await ctx.probes.answersWith(ctx.source);
  const model = await ctx.probes.loadOther(path);
  const checks: ExportCheck[] = [];
  try {
    const got = await ctx.probes.answersFrom(model, null);
    let same = 0;
    const lines: string[] = [];
    for (let i = 0; i < probes.length; i++) {
      const a = want[i] ?? [];
      const b = got[i] ?? [];
      const eq = a.length === b.length && a.every((t, j) => t === b[j]);
      if (eq) same++;
      lines.push(
        `"${probes[i]!.label}": ${eq ? 'same' : 'DIFFERENT'}: base + adapter ${JSON.stringify(await ctx.probes.text(a))}` +
          (eq ? '' : `, merged ${JSON.stringify(model.detokenize(b as Token[]).slice(0, 80))}`),
      );
    }
    checks.push({
      name:
        type === 'F16'
          ? `the merged F16 model loads in node-llama-cpp and answers the ${probes.length} probe prompt(s) greedily as base + the run's adapter`
          : `the merged ${type} model loads in node-llama-cpp and answers the ${probes.length} probe prompt(s) (compared with base + adapter; a quantized model may differ)`,
      // F16 keeps the merged weights to F16 precision: the answers must be the same tokens.
      // A quantized merge is judged by its perplexity; differing answers are reported.
      ok:
        type === 'F16' ? probes.length > 0 && same === probes.length : got.length === probes.length,
      detail: `${same}/${probes.length} answers identical to base + adapter. ${lines.join('; ')}`,
    });
    const val = validationSamples(ctx);
    if (!val || val.samples.length === 0) {
      checks.push({
        name: 'perplexity on the validation split',
        ok: true,
        detail: 'not measured: the run has no validation split',
      });
    } else {
      const ref = await meanNll(await ctx.probes.base(), ctx.source, val.samples);
      const m = await meanNll(model, null, val.samples);
      const pRef = Math.exp(ref.nll / Math.max(1, ref.n));
      const pM = Math.exp(m.nll / Math.max(1, m.n));
      const change = (pM / pRef - 1) * 100;
      checks.push({
        name: `perplexity of the merged ${type} model on the validation split, next to base + adapter`,
        ok: Number.isFinite(pM) && Number.isFinite(pRef),
        detail: `merged ${type} ${pM.toFixed(4)}, base + adapter ${pRef.toFixed(4)} (${change >= 0 ? '+' : ''}${change.toFixed(2)}%; mean NLL ${(m.nll / Math.max(1, m.n)).toFixed(4)} vs ${(ref.nll / Math.max(1, ref.n)).toFixed(4)} nats/token) on ${m.n} tokens of ${val.samples.length}${val.of > val.samples.length ? ` of ${val.of}` : ''} validation samples`,
      });
    }
  } finally {
    await model.dispose();
  }
  return checks;
}

/** Folders created for the LM Studio layout, removed again when a failed merge left them empty. */
function makeDirs(outDir: string, path: string): string[] {
  const made: string[] = [];
  let d = dirname(path);
  while (relative(outDir, d) !== '' && !existsSync(d)) {
    made.unshift(d);
    d = dirname(d);
  }
  mkdirSync(dirname(path), { recursive: true });
  return made;
}
function removeEmpty(dirs: string[]): void {
  for (const d of [...dirs].reverse()) {
    try {
      if (readdirSync(d).length === 0) rmdirSync(d);
    } catch {
      /* gone or not empty */
    }
  }
}

export const mergedFormat: ExportFormatModule = {
  info: {
    id: 'merged',
    label: 'Merged model (GGUF)',
    explain:
      'The adapter merged into the base model: one standalone .gguf (F16, Q8_0, Q6_K, Q5_K_M or Q4_K_M) for LM Studio, Ollama (FROM), llama.cpp (-m) and any app that cannot load adapters.',
    layout: 'file',
  },
  target(outDir, name, req) {
    const file = `${name}-${requestType(req)}.gguf`;
    if (!req?.lmstudio) return inside(outDir, file);
    const publisher = checkName(req.publisher ?? DEFAULT_PUBLISHER, 'publisher');
    return inside(outDir, join(publisher, name, file));
  },
  async write(ctx): Promise<Written> {
    const type = requestType(ctx.request);
    const path = this.target(ctx.outDir, ctx.name, ctx.request);
    const made = makeDirs(ctx.outDir, path);
    let phase1 = 0;
    try {
      const r = await runMergeProcess(
        {
          basePath: ctx.model.path,
          adapterPath: ctx.source,
          outPath: path,
          scale: 1,
          type,
          threads: Math.max(1, Math.floor(availableParallelism() / 2)),
          checkSpace: true,
          overwrite: ctx.overwrite,
        },
        {
          signal: ctx.signal,
          onProgress: (p) => {
            // one unit per tensor and phase: F16 has one phase, the others two
            if (p.phase === 'merge') phase1 = p.total;
            const total = type === 'F16' ? p.total : phase1 + p.total;
            const done = p.phase === 'merge' ? p.done : phase1 + p.done;
            ctx.progress(
              done,
              total,
              p.phase === 'merge'
                ? `merging tensor ${p.done}/${p.total}`
                : `quantizing to ${type} with llama.cpp, tensor ${p.done}/${p.total}`,
            );
          },
        },
      );
      return { path, files: [{ path, bytes: r.bytes }] };
    } catch (err) {
      removeEmpty(made);
      throw err;
    }
  },
  async verify(ctx, w) {
    const type = requestType(ctx.request);
    return [mergedFileCheck(ctx, w.path, type), ...(await modelChecks(ctx, w.path, type))];
  },
  commands(_ctx, w) {
    const m = shellQuote(w.path);
    return [
      { label: 'llama.cpp chat', command: `llama-cli -m ${m}` },
      { label: 'llama.cpp server', command: `llama-server -m ${m}` },
      { label: 'Ollama (Modelfile line)', command: `FROM ${m}` },
    ];
  },
};
