/**
 * GGUF LoRA adapter: the run's adapter copied tensor for tensor (same names, shapes, F32 data)
 * with its metadata completed: the keys llama.cpp's adapter loader reads (general.type =
 * adapter, general.architecture, adapter.type = lora, adapter.lora.alpha), general.name /
 * description / base_model.* (what model browsers and Ollama show), and ours (overnight.run.id,
 * overnight.export.step, overnight.lora.rank, overnight.lora.targets, the base model's file,
 * name and fingerprint). Loads in llama-cli / llama-server --lora, node-llama-cpp, Ollama ADAPTER.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import type { ExportCheck } from '../../../contract/index.ts';
import { AtomicFile, inside } from '../files.ts';
import {
  shellQuote,
  type ExportContext,
  type ExportFormatModule,
  type Written,
} from '../format.ts';
import {
  f32,
  ggufHeader,
  kvNumber,
  kvString,
  readGgufHeader,
  str,
  strArr,
  tensorByteLength,
  tensorBytes,
  u32,
  type GgufValue,
} from '../gguf.ts';

const CHUNK = 4 << 20;

/** rank and targets, read from the adapter's tensors ("blk.N.<target>.weight.lora_a"). */
export function adapterShape(ctx: Pick<ExportContext, 'adapter'>): {
  rank: number;
  targets: string[];
  alpha: number;
} {
  const targets = new Set<string>();
  let rank = 0;
  for (const t of ctx.adapter.tensors) {
    const m = /^blk\.\d+\.([a-z_]+)\.weight\.lora_a$/.exec(t.name);
    if (!m) continue;
    targets.add(m[1]!);
    rank = t.ne[1] ?? rank;
  }
  return {
    rank,
    targets: [...targets],
    alpha: kvNumber(ctx.adapter, 'adapter.lora.alpha') ?? rank,
  };
}

/** The base model's name as its metadata gives it (general.name), else the library's. */
export function baseName(ctx: Pick<ExportContext, 'base' | 'model'>): string {
  return kvString(ctx.base, 'general.name') ?? ctx.model.name;
}

/** The exported adapter's metadata: the source's keys, completed and corrected. */
export function adapterMetadata(ctx: ExportContext): Map<string, GgufValue> {
  const md = new Map(ctx.adapter.metadata);
  const { rank, targets } = adapterShape(ctx);
  const step = ctx.checkpoint ?? ctx.run.step;
  const set = (k: string, v: GgufValue): void => void md.set(k, v);
  set('general.type', str('adapter'));
  set('adapter.type', str('lora'));
  if (!md.has('adapter.lora.alpha')) set('adapter.lora.alpha', f32(rank));
  set('general.name', str(`${ctx.run.name} LoRA (${baseName(ctx)})`));
  set(
    'general.description',
    str(
      `LoRA adapter trained with Overnight: run "${ctx.run.name}", ${ctx.checkpoint === null ? 'final adapter' : 'checkpoint'} at step ${step}, rank ${rank}, on ${baseName(ctx)}`,
    ),
  );
  set('general.base_model.count', u32(1));
  set('general.base_model.0.name', str(baseName(ctx)));
  const org = kvString(ctx.base, 'general.organization');
  if (org) set('general.base_model.0.organization', str(org));
  const repo = kvString(ctx.base, 'general.source.huggingface.repository');
  if (repo) set('general.base_model.0.repo_url', str(`https://huggingface.co/${repo}`));
  set('overnight.run.id', str(ctx.run.id));
  set('overnight.run.name', str(ctx.run.name));
  set('overnight.export.step', u32(step));
  set('overnight.export.source', str(ctx.checkpoint === null ? 'final' : 'checkpoint'));
  set('overnight.lora.rank', u32(rank));
  set('overnight.lora.targets', strArr(targets));
  set('overnight.base.file', str(basename(ctx.model.path)));
  set('overnight.base.library_fingerprint', str(ctx.model.fingerprint));
  return md;
}

/** Writes the adapter GGUF to `finalPath` (temp + rename), streaming the tensor data. */
export function writeAdapterGguf(
  ctx: ExportContext,
  finalPath: string,
  overwrite: boolean,
): number {
  const tensors = ctx.adapter.tensors.map((t) => ({ ...t, bytes: tensorByteLength(t) }));
  const { header, offsets, alignment } = ggufHeader(adapterMetadata(ctx), tensors);
  const last = tensors.length - 1;
  const total =
    header.length +
    (last < 0 ? 0 : offsets[last]! + Math.ceil(tensors[last]!.bytes / alignment) * alignment);
  const f = new AtomicFile(finalPath, ctx.signal);
  const fd = openSync(ctx.adapter.path, 'r');
  try {
    f.write(header);
    const buf = Buffer.alloc(CHUNK);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const start = ctx.adapter.dataOffset + t.offset;
      for (let off = 0; off < t.bytes;) {
        const n = readSync(fd, buf, 0, Math.min(CHUNK, t.bytes - off), start + off);
        if (n <= 0) throw new Error(`${ctx.adapter.path}: short read of ${t.name}`);
        f.write(buf.subarray(0, n));
        off += n;
      }
      const pad = (alignment - (t.bytes % alignment)) % alignment;
      if (pad) f.write(Buffer.alloc(pad));
      ctx.progress(f.written, total, `${t.name}`);
    }
    f.commit(overwrite);
    return f.written;
  } catch (err) {
    f.abort();
    throw err;
  } finally {
    closeSync(fd);
  }
}

/** Checks the written GGUF against the source: every tensor byte-equal, the metadata there. */
export function adapterFileChecks(ctx: ExportContext, path: string): ExportCheck[] {
  const h = readGgufHeader(path);
  const problems: string[] = [];
  if (h.tensors.length !== ctx.adapter.tensors.length)
    problems.push(`${h.tensors.length} tensors, the source has ${ctx.adapter.tensors.length}`);
  for (const t of ctx.adapter.tensors) {
    const u = h.tensors.find((x) => x.name === t.name);
    if (!u) problems.push(`tensor ${t.name} is missing`);
    else if (u.ne.join(',') !== t.ne.join(',') || u.type !== t.type)
      problems.push(
        `tensor ${t.name} has shape [${u.ne}] type ${u.type}, source [${t.ne}] type ${t.type}`,
      );
    else if (!tensorBytes(h, u).equals(tensorBytes(ctx.adapter, t)))
      problems.push(`tensor ${t.name} differs from the source`);
  }
  const want: [string, string | number][] = [
    ['general.type', 'adapter'],
    ['adapter.type', 'lora'],
    ['general.architecture', ctx.model.architecture],
    ['overnight.run.id', ctx.run.id],
  ];
  for (const [k, v] of want) {
    const got = h.metadata.get(k)?.value;
    if (got !== v) problems.push(`${k} is ${JSON.stringify(got)}, expected ${JSON.stringify(v)}`);
  }
  const alpha = kvNumber(h, 'adapter.lora.alpha');
  if (alpha === null || !(alpha > 0)) problems.push(`adapter.lora.alpha is ${alpha}`);
  return [
    {
      name: 'the file holds the source adapter tensors byte for byte and the adapter metadata',
      ok: problems.length === 0,
      detail:
        problems.length === 0
          ? `${h.tensors.length} tensors equal; rank ${kvNumber(h, 'overnight.lora.rank')}, alpha ${alpha}, architecture ${ctx.model.architecture}`
          : problems.join('; '),
    },
  ];
}

export function llamaCppCommands(
  ctx: ExportContext,
  adapter: string,
): { label: string; command: string }[] {
  const m = shellQuote(ctx.model.path);
  const a = shellQuote(adapter);
  return [
    { label: 'llama.cpp chat', command: `llama-cli -m ${m} --lora ${a}` },
    { label: 'llama.cpp server', command: `llama-server -m ${m} --lora ${a}` },
  ];
}

export const adapterFormat: ExportFormatModule = {
  info: {
    id: 'adapter',
    label: 'GGUF LoRA adapter',
    explain:
      'One .gguf adapter file for llama.cpp (--lora), node-llama-cpp, LM Studio and Ollama (ADAPTER), used on top of the base model.',
    layout: 'file',
  },
  target: (outDir, name) => inside(outDir, `${name}.gguf`),
  async write(ctx): Promise<Written> {
    const path = this.target(ctx.outDir, ctx.name);
    const bytes = writeAdapterGguf(ctx, path, ctx.overwrite);
    return { path, files: [{ path, bytes }], adapterGguf: path };
  },
  async verify(ctx, w) {
    return [
      ...adapterFileChecks(ctx, w.adapterGguf!),
      await ctx.probes.sameGreedy(ctx.source, w.adapterGguf!, 'the exported adapter'),
    ];
  },
  commands: (ctx, w) => llamaCppCommands(ctx, w.adapterGguf!),
};
