/**
 * PEFT / Hugging Face adapter: a folder `<name>/` with `adapter_model.safetensors`,
 * `adapter_config.json` and a README, loadable by Python's `peft` on the Hugging Face model the
 * GGUF was converted from.
 *
 * Names: GGUF `blk.{i}.attn_q.weight.lora_a` -> `base_model.model.model.layers.{i}.self_attn.
 * q_proj.lora_A.weight` (attn_k/v/output -> k_proj/v_proj/o_proj, ffn_gate/up/down ->
 * mlp.gate_proj/up_proj/down_proj).
 * Orientation: a GGUF tensor's ne is torch's shape reversed and the data is the same row-major
 * bytes, so lora_a ne [in, r] is torch [r, in] (PEFT lora_A) and lora_b ne [r, out] is torch
 * [out, r] (PEFT lora_B): the data is copied as is.
 * RoPE order: llama.cpp's converter permutes the rows of q_proj / k_proj for the llama family
 * (llama, mistral: rotary pairs (i, i + d/2) of each head become adjacent rows (2i, 2i+1));
 * a LoRA trained on the GGUF has B's rows (q and k) in GGUF order, so writing PEFT applies the
 * inverse: HF row h*d + j*d/2 + i = GGUF row h*d + 2i + j (h head, j in {0,1}, i < d/2; k
 * uses the KV head count). Qwen2 / Qwen3 GGUFs keep Hugging Face's order (NEOX RoPE): no permutation.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OvernightError, type ExportCheck } from '../../../contract/index.ts';
import { AtomicFile, AtomicFolder, inside, writeFileAtomic } from '../files.ts';
import {
  shellQuote,
  type ExportContext,
  type ExportFormatModule,
  type Written,
} from '../format.ts';
import { f16ToF32, f32ToF16, kvNumber, kvString, tensorF32, type GgufTensor } from '../gguf.ts';
import { adapterShape, baseName } from './adapter.ts';

/** GGUF target -> Hugging Face module path inside a decoder layer. */
export const HF_MODULES: Record<string, string> = {
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

/** Architectures PEFT export supports, and whether their q/k rows are in llama.cpp's RoPE order. */
export const PEFT_ARCHITECTURES: Record<string, { permutesQK: boolean }> = {
  llama: { permutesQK: true },
  mistral: { permutesQK: true },
  qwen2: { permutesQK: false },
  qwen3: { permutesQK: false },
};

export const SAFETENSORS = 'adapter_model.safetensors';
export const CONFIG = 'adapter_config.json';

/** `blk.3.attn_q.weight.lora_b` -> { layer 3, target attn_q, ab 'B' }; null for anything else. */
export function parseLoraName(
  name: string,
): { layer: number; target: string; ab: 'A' | 'B' } | null {
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight\.lora_([ab])$/.exec(name);
  if (!m) return null;
  return { layer: Number(m[1]), target: m[2]!, ab: m[3] === 'a' ? 'A' : 'B' };
}

export function hfName(layer: number, target: string, ab: 'A' | 'B'): string {
  const mod = HF_MODULES[target];
  if (!mod)
    throw new OvernightError('UNSUPPORTED', `no Hugging Face module for the LoRA target ${target}`);
  return `base_model.model.model.layers.${layer}.${mod}.lora_${ab}.weight`;
}

/**
 * Reorders the rows (each `cols` long) of `m` between GGUF and Hugging Face order for `heads`
 * heads: toHf maps GGUF row h*d + 2i + j to HF row h*d + j*d/2 + i; !toHf the reverse.
 */
export function permuteRows(
  m: Float32Array,
  cols: number,
  heads: number,
  toHf: boolean,
): Float32Array {
  const rows = m.length / cols;
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0)
    throw new OvernightError(
      'INVALID_FILE',
      `${rows} rows do not split into ${heads} heads of an even size`,
    );
  const half = d / 2;
  const out = new Float32Array(m.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const hf = h * d + j * half + i;
        const gg = h * d + 2 * i + j;
        const [from, to] = toHf ? [gg, hf] : [hf, gg];
        out.set(m.subarray(from * cols, (from + 1) * cols), to * cols);
      }
  return out;
}

/** Heads for the rows of a target's B (q: attention heads; k: KV heads), or null: no permutation. */
function permuteHeads(ctx: Pick<ExportContext, 'base' | 'model'>, target: string): number | null {
  const arch = ctx.model.architecture;
  if (!PEFT_ARCHITECTURES[arch]?.permutesQK) return null;
  const nHead = kvNumber(ctx.base, `${arch}.attention.head_count`);
  const nKv = kvNumber(ctx.base, `${arch}.attention.head_count_kv`) ?? nHead;
  if (!nHead)
    throw new OvernightError(
      'INVALID_FILE',
      `${ctx.model.path} has no ${arch}.attention.head_count`,
    );
  if (target === 'attn_q') return nHead;
  if (target === 'attn_k') return nKv;
  return null;
}

interface PeftTensor {
  hf: string;
  gguf: GgufTensor;
  shape: number[];
  layer: number;
  target: string;
  ab: 'A' | 'B';
}

function peftTensors(ctx: ExportContext): PeftTensor[] {
  const out: PeftTensor[] = [];
  for (const t of ctx.adapter.tensors) {
    const p = parseLoraName(t.name);
    if (!p)
      throw new OvernightError('UNSUPPORTED', `adapter tensor ${t.name} has no PEFT counterpart`);
    out.push({ ...p, hf: hfName(p.layer, p.target, p.ab), gguf: t, shape: [...t.ne].reverse() });
  }
  const order = Object.keys(HF_MODULES);
  out.sort(
    (a, b) =>
      a.layer - b.layer ||
      order.indexOf(a.target) - order.indexOf(b.target) ||
      a.ab.localeCompare(b.ab),
  );
  return out;
}

/** The tensor's values in Hugging Face order (B rows of q/k un-permuted where the arch needs it). */
function hfValues(ctx: ExportContext, t: PeftTensor): Float32Array {
  const v = tensorF32(ctx.adapter, t.gguf);
  const heads = t.ab === 'B' ? permuteHeads(ctx, t.target) : null;
  return heads === null ? v : permuteRows(v, t.gguf.ne[0]!, heads, true);
}

/** The model's Hugging Face id when the GGUF says it, else its name. */
export function baseModelId(ctx: Pick<ExportContext, 'base' | 'model'>): string {
  const repo = kvString(ctx.base, 'general.source.huggingface.repository');
  if (repo) return repo;
  const url =
    kvString(ctx.base, 'general.source.url') ?? kvString(ctx.base, 'general.base_model.0.repo_url');
  const m = url ? /huggingface\.co\/([^/]+\/[^/?#]+)/.exec(url) : null;
  if (m) return m[1]!;
  const org = kvString(ctx.base, 'general.organization');
  const basename = kvString(ctx.base, 'general.basename');
  if (org && basename) return `${org}/${basename}`;
  return baseName(ctx);
}

export function adapterConfig(ctx: ExportContext): Record<string, unknown> {
  const { rank, alpha, targets } = adapterShape(ctx);
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModelId(ctx),
    r: rank,
    lora_alpha: alpha,
    lora_dropout: 0,
    target_modules: targets.map((t) => HF_MODULES[t]!.split('.')[1]!),
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    use_rslora: false,
    use_dora: false,
    revision: null,
  };
}

function writeSafetensors(ctx: ExportContext, path: string, tensors: PeftTensor[]): number {
  const f16 = ctx.precision === 'f16';
  const width = f16 ? 2 : 4;
  const header: Record<string, unknown> = {
    __metadata__: {
      format: 'pt',
      'overnight.run.id': ctx.run.id,
      'overnight.export.step': String(ctx.checkpoint ?? ctx.run.step),
    },
  };
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, x) => a * x, 1) * width;
    header[t.hf] = { dtype: f16 ? 'F16' : 'F32', shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const total = 8 + Buffer.byteLength(json) + off;
  const f = new AtomicFile(path, ctx.signal);
  try {
    f.write(len);
    f.write(Buffer.from(json, 'utf8'));
    for (const t of tensors) {
      const v = hfValues(ctx, t);
      if (f16) {
        const b = Buffer.alloc(v.length * 2);
        for (let i = 0; i < v.length; i++) b.writeUInt16LE(f32ToF16(v[i]!), i * 2);
        f.write(b);
      } else f.write(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      ctx.progress(f.written, total, t.hf);
    }
    f.commit(false);
    return f.written;
  } catch (err) {
    f.abort();
    throw err;
  }
}

/** Reads a safetensors file: each tensor's dtype, shape and values as F32. */
export function readSafetensors(
  path: string,
): Map<string, { dtype: string; shape: number[]; values: Float32Array }> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.toString('utf8', 8, 8 + n)) as Record<string, unknown>;
  const base = 8 + n;
  const out = new Map<string, { dtype: string; shape: number[]; values: Float32Array }>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = info as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    const [s, e] = data_offsets;
    const count = shape.reduce((a, x) => a * x, 1);
    const values = new Float32Array(count);
    if (dtype === 'F32') {
      if (e - s !== count * 4)
        throw new Error(`${path}: ${name} has ${e - s} bytes for ${count} F32 values`);
      for (let i = 0; i < count; i++) values[i] = buf.readFloatLE(base + s + i * 4);
    } else if (dtype === 'F16') {
      if (e - s !== count * 2)
        throw new Error(`${path}: ${name} has ${e - s} bytes for ${count} F16 values`);
      for (let i = 0; i < count; i++) values[i] = f16ToF32(buf.readUInt16LE(base + s + i * 2));
    } else throw new Error(`${path}: ${name} has dtype ${dtype}`);
    out.set(name, { dtype, shape, values });
  }
  return out;
}

/** The round trip: read back, map names to GGUF, undo the permutation, compare with the source. */
export function peftChecks(ctx: ExportContext, dir: string): ExportCheck[] {
  const problems: string[] = [];
  let maxDiff = 0;
  let count = 0;
  try {
    const st = readSafetensors(join(dir, SAFETENSORS));
    const seen = new Set<string>();
    for (const [name, t] of st) {
      const m =
        /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$/.exec(
          name,
        );
      const target = m
        ? Object.keys(HF_MODULES).find((k) => HF_MODULES[k] === `${m[2]}.${m[3]}`)
        : undefined;
      if (!m || !target) {
        problems.push(`${name} is not a PEFT LoRA tensor name`);
        continue;
      }
      const ggufName = `blk.${m[1]}.${target}.weight.lora_${m[4]!.toLowerCase()}`;
      const src = ctx.adapter.tensors.find((x) => x.name === ggufName);
      if (!src) {
        problems.push(`${name} maps to ${ggufName}, which the source adapter does not have`);
        continue;
      }
      seen.add(ggufName);
      if (t.shape.join(',') !== [...src.ne].reverse().join(',')) {
        problems.push(`${name} has shape [${t.shape}], expected [${[...src.ne].reverse()}]`);
        continue;
      }
      const heads = m[4] === 'B' ? permuteHeads(ctx, target) : null;
      const back = heads === null ? t.values : permuteRows(t.values, src.ne[0]!, heads, false);
      const want = tensorF32(ctx.adapter, src);
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(want[i]! - back[i]!);
        if (d > maxDiff) maxDiff = d;
        const tol = t.dtype === 'F32' ? 0 : Math.max(Math.abs(want[i]!) * 1e-3, 1e-7);
        if (!(d <= tol)) {
          problems.push(`${name}[${i}] is ${back[i]}, the source has ${want[i]}`);
          break;
        }
      }
      count++;
    }
    for (const t of ctx.adapter.tensors)
      if (!seen.has(t.name)) problems.push(`${t.name} is missing from ${SAFETENSORS}`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  const cfgProblems: string[] = [];
  let cfgFacts = '';
  try {
    const cfg = JSON.parse(readFileSync(join(dir, CONFIG), 'utf8')) as Record<string, unknown>;
    const { rank, alpha, targets } = adapterShape(ctx);
    const mods = targets.map((t) => HF_MODULES[t]!.split('.')[1]!).sort();
    if (cfg.peft_type !== 'LORA') cfgProblems.push(`peft_type is ${String(cfg.peft_type)}`);
    if (cfg.task_type !== 'CAUSAL_LM') cfgProblems.push(`task_type is ${String(cfg.task_type)}`);
    if (cfg.r !== rank) cfgProblems.push(`r is ${String(cfg.r)}, the adapter's rank is ${rank}`);
    if (cfg.lora_alpha !== alpha)
      cfgProblems.push(`lora_alpha is ${String(cfg.lora_alpha)}, the adapter's is ${alpha}`);
    const got = Array.isArray(cfg.target_modules)
      ? [...(cfg.target_modules as string[])].sort()
      : [];
    if (got.join(',') !== mods.join(','))
      cfgProblems.push(
        `target_modules are ${got.join(', ')}, the adapter trains ${mods.join(', ')}`,
      );
    cfgFacts = `r ${rank}, lora_alpha ${alpha}, target_modules ${mods.join(', ')}, base ${String(cfg.base_model_name_or_path)}`;
  } catch (err) {
    cfgProblems.push((err as Error).message);
  }
  const arch = ctx.model.architecture;
  return [
    {
      name: `the safetensors read back, mapped to GGUF names${PEFT_ARCHITECTURES[arch]?.permutesQK ? ' (q/k rows permuted back to the GGUF order)' : ''}, equal the source adapter`,
      ok: problems.length === 0 && count > 0,
      detail:
        problems.length === 0
          ? `${count} tensors, largest difference ${maxDiff.toExponential(2)} (${ctx.precision.toUpperCase()})`
          : problems.slice(0, 5).join('; '),
    },
    {
      name: 'adapter_config.json names the right modules, rank and alpha',
      ok: cfgProblems.length === 0,
      detail: cfgProblems.length === 0 ? cfgFacts : cfgProblems.join('; '),
    },
  ];
}

function readme(ctx: ExportContext, dir: string): string {
  return [
    `# ${ctx.run.name}`,
    '',
    `A LoRA adapter (PEFT format) for ${baseModelId(ctx)}, trained with Overnight on the GGUF ${ctx.model.path} (run ${ctx.run.id}, ${ctx.checkpoint === null ? 'final adapter' : `checkpoint at step ${ctx.checkpoint}`}).`,
    '',
    '```python',
    'from transformers import AutoModelForCausalLM',
    'from peft import PeftModel',
    `base = AutoModelForCausalLM.from_pretrained(${JSON.stringify(baseModelId(ctx))})`,
    `model = PeftModel.from_pretrained(base, ${JSON.stringify(dir)})`,
    '```',
    '',
    'Use it on the Hugging Face model the GGUF was converted from (same weights; a quantized GGUF was trained against its quantized weights).',
    '',
  ].join('\n');
}

export const peftFormat: ExportFormatModule = {
  info: {
    id: 'peft',
    label: 'PEFT / Hugging Face',
    explain:
      "adapter_model.safetensors + adapter_config.json for Python's peft on the Hugging Face model the GGUF came from.",
    layout: 'folder',
  },
  target: (outDir, name) => inside(outDir, name),
  check(ctx) {
    const arch = ctx.model.architecture;
    if (!PEFT_ARCHITECTURES[arch])
      throw new OvernightError(
        'UNSUPPORTED',
        `PEFT export does not support architecture ${arch} (supported: ${Object.keys(PEFT_ARCHITECTURES).join(', ')})`,
      );
    for (const t of ctx.adapter.tensors)
      if (!parseLoraName(t.name) || !HF_MODULES[parseLoraName(t.name)!.target])
        throw new OvernightError('UNSUPPORTED', `adapter tensor ${t.name} has no PEFT counterpart`);
  },
  async write(ctx): Promise<Written> {
    const path = this.target(ctx.outDir, ctx.name);
    const folder = new AtomicFolder(path);
    try {
      const tensors = peftTensors(ctx);
      const bytes = writeSafetensors(ctx, folder.path(SAFETENSORS), tensors);
      const cfg = JSON.stringify(adapterConfig(ctx), null, 2) + '\n';
      writeFileAtomic(folder.path(CONFIG), cfg, false);
      const rd = readme(ctx, path);
      writeFileAtomic(folder.path('README.md'), rd, false);
      if (ctx.signal.aborted)
        throw new OvernightError('CANCELLED', `the export was cancelled; ${path} was not written`);
      folder.commit(ctx.overwrite);
      return {
        path,
        files: [
          { path: join(path, SAFETENSORS), bytes },
          { path: join(path, CONFIG), bytes: Buffer.byteLength(cfg) },
          { path: join(path, 'README.md'), bytes: Buffer.byteLength(rd) },
        ],
      };
    } catch (err) {
      folder.abort();
      throw err;
    }
  },
  async verify(ctx, w) {
    return peftChecks(ctx, w.path);
  },
  commands(ctx, w) {
    return [
      {
        label: 'Python (peft)',
        command: `python -c "from transformers import AutoModelForCausalLM; from peft import PeftModel; PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('${baseModelId(ctx)}'), '${w.path}')"`,
      },
      { label: 'Files', command: `ls ${shellQuote(w.path)}` },
    ];
  },
};
