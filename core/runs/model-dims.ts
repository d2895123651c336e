/**
 * The model dimensions the memory estimate needs (layers, widths, heads, vocabulary), read from
 * the GGUF metadata of the file itself: the library's ModelInfo has layers, embedding and vocab
 * sizes, but not the feed-forward width or the head counts.
 */
import { stat } from 'node:fs/promises';
import { OvernightError } from '../../contract/index.ts';
import type { ModelDims } from './estimate.ts';

const IGNORED_KEYS = [
  'tokenizer.ggml.merges',
  'tokenizer.ggml.token_type',
  'tokenizer.ggml.scores',
  'tokenizer.ggml.tokens',
];

function num(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  // Per-layer arrays (some archs vary heads or ffn by layer): take the largest.
  if (Array.isArray(v) && v.length > 0) return Math.max(...v.map((x) => Number(x)));
  return null;
}

export async function readModelDims(path: string, vocabSizeHint?: number): Promise<ModelDims> {
  const st = await stat(path).catch(() => {
    throw new OvernightError(
      'FILE_NOT_FOUND',
      `the model file ${path} does not exist (moved or deleted?)`,
    );
  });
  const { readGgufFileInfo } = await import('node-llama-cpp');
  const info = await readGgufFileInfo(path, {
    sourceType: 'filesystem',
    logWarnings: false,
    ignoreKeys: IGNORED_KEYS,
    spliceSplitFiles: false,
  });
  return dimsFromGgufInfo(info, st.size, path, vocabSizeHint);
}

/** The dimensions from a parsed GGUF header (file or network); `source` names it in errors. */
export function dimsFromGgufInfo(
  info: {
    metadata: unknown;
    fullTensorInfo?:
      readonly { name: string; dimensions: readonly (number | bigint)[] }[] | undefined;
  },
  weightBytes: number,
  source: string,
  vocabSizeHint?: number,
): ModelDims {
  const md = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  const arch = String((md.general as { architecture?: string } | undefined)?.architecture ?? '');
  const a = (md[arch] ?? {}) as Record<string, unknown>;
  const attn = (a.attention ?? {}) as Record<string, unknown>;
  const layers = num(a.block_count);
  const embd = num(a.embedding_length);
  const ffn = num(a.feed_forward_length);
  const heads = num(attn.head_count);
  if (layers === null || embd === null || ffn === null || heads === null) {
    throw new OvernightError(
      'INVALID_FILE',
      `${source}: the GGUF metadata lacks ${arch}.block_count, embedding_length, feed_forward_length or attention.head_count`,
    );
  }
  const tokenEmbd = info.fullTensorInfo?.find((t) => t.name === 'token_embd.weight');
  const vocab =
    num(a.vocab_size) ?? (tokenEmbd ? Number(tokenEmbd.dimensions[1]) : null) ?? vocabSizeHint ?? 0;
  return {
    layers,
    embd,
    ffn,
    heads,
    kvHeads: num(attn.head_count_kv) ?? heads,
    vocab,
    weightBytes,
  };
}
