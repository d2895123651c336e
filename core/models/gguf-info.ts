/**
 * Reads what the library needs from a GGUF file on the engine's machine, without loading the
 * model: header + metadata + tensor infos via node-llama-cpp's `readGgufFileInfo`, a bounds
 * check of every tensor's data against the file size (truncation), and a content fingerprint.
 * Every failure is an OvernightError naming the file and the problem.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { OvernightError, type ModelInfo } from '../../contract/index.ts';
import { detectTemplateFamily } from './chat-template.ts';
import { ggmlTypeName, tensorByteSize } from './ggml-types.ts';
import { architectureRefusal, tensorTypeRefusal } from './trainability.ts';

/** Everything about the file; the library adds id, name, addedAt and fileExists. */
export type ModelFileInfo = Omit<ModelInfo, 'id' | 'name' | 'addedAt' | 'fileExists'> & {
  /** Set when the trainer cannot run this architecture at all (models.add refuses it). */
  architectureRefusal: string | null;
  /** `general.name` from the metadata, if any. */
  generalName: string | null;
};

const GGUF_MAGIC = Buffer.from('GGUF', 'ascii');

/** Metadata arrays we never need (large on big vocabularies). */
const IGNORED_KEYS = [
  'tokenizer.ggml.merges',
  'tokenizer.ggml.token_type',
  'tokenizer.ggml.scores',
];

export async function readModelFile(path: string): Promise<ModelFileInfo> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') {
      throw new OvernightError('FILE_NOT_FOUND', `${path} does not exist`);
    }
    throw new OvernightError('INVALID_FILE', `cannot read ${path}: ${err.message}`);
  });
  if (!st.isFile()) throw new OvernightError('INVALID_FILE', `${path} is not a file`);
  const fileSize = st.size;

  await checkMagic(path, fileSize);

  const { readGgufFileInfo, GgufFileType } = await import('node-llama-cpp');
  let info: Awaited<ReturnType<typeof readGgufFileInfo>>;
  try {
    info = await readGgufFileInfo(path, {
      sourceType: 'filesystem',
      logWarnings: false,
      ignoreKeys: IGNORED_KEYS,
      spliceSplitFiles: false,
    });
  } catch (err) {
    throw new OvernightError(
      'INVALID_FILE',
      `${path} is truncated or corrupt: its GGUF header could not be read (${(err as Error).message})`,
    );
  }

  // node-llama-cpp's reader yields zeros past the end of the file instead of failing, so a file
  // cut inside its header parses into garbage that ends beyond the file: check that first.
  if ((info.infoEndOffset ?? info.metadataSize) > fileSize) {
    throw new OvernightError(
      'INVALID_FILE',
      `${path} is truncated: its GGUF header runs past the end of the file (the file has ${fileSize} bytes)`,
    );
  }

  const md = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  const splitCount = Number(md.split?.count ?? 0);
  if (splitCount > 1) {
    throw new OvernightError(
      'UNSUPPORTED',
      `${path} is one part of a split GGUF (${splitCount} parts); merge the parts into one file first ` +
        `(llama-gguf-split --merge)`,
    );
  }

  const tensors = info.tensorInfo ?? [];
  const infoEnd = info.infoEndOffset ?? 0;

  // Tensor types, parameter count, and where the tensor data ends.
  const tensorTypes: Record<string, number> = {};
  let params = 0n;
  let dataEnd = BigInt(infoEnd);
  for (const t of tensors) {
    const name = ggmlTypeName(t.ggmlType);
    tensorTypes[name] = (tensorTypes[name] ?? 0) + 1;
    const elements = t.dimensions.reduce<bigint>((a, d) => a * BigInt(d), 1n);
    params += elements;
    const bytes = tensorByteSize(t.ggmlType, elements);
    if (bytes !== null) {
      const end = BigInt(t.fileOffset) + bytes;
      if (end > dataEnd) dataEnd = end;
    }
  }
  if (dataEnd > BigInt(fileSize)) {
    throw new OvernightError(
      'INVALID_FILE',
      `${path} is truncated: its tensors need ${dataEnd} bytes but the file has ${fileSize} bytes`,
    );
  }

  const general = md.general ?? {};
  const architecture = String(general.architecture ?? 'unknown');
  const arch = md[architecture] ?? {};
  const num = (v: unknown): number =>
    typeof v === 'number' || typeof v === 'bigint' ? Number(v) : 0;

  const tokens = md.tokenizer?.ggml as { tokens?: readonly unknown[] } | undefined;
  const tokenEmbd = tensors.find((t) => t.name === 'token_embd.weight');
  const vocabSize =
    num(arch.vocab_size) ||
    (tokens?.tokens?.length ?? 0) ||
    (tokenEmbd ? Number(tokenEmbd.dimensions[1] ?? 0) : 0);

  const template = md.tokenizer?.chat_template;
  const hasTemplate = typeof template === 'string' && template.length > 0;

  const fileTypeNumber = general.file_type;
  const fileType =
    typeof fileTypeNumber === 'number' && GgufFileType[fileTypeNumber]
      ? GgufFileType[fileTypeNumber].replace(/^(MOSTLY|ALL)_/, '')
      : dominantType(tensorTypes);

  const archRefusal = architectureRefusal({
    architecture,
    expertCount: num(arch.expert_count),
    tensorNames: tensors.map((t) => t.name),
  });
  const typeRefusal = tensorTypeRefusal(tensorTypes);
  const reason = archRefusal ?? typeRefusal;

  return {
    path,
    architecture,
    parameterCount: Number(params),
    fileType,
    tensorTypes,
    contextLength: num(arch.context_length),
    layers: num(arch.block_count),
    embeddingSize: num(arch.embedding_length),
    vocabSize,
    chatTemplate: {
      present: hasTemplate,
      family: hasTemplate ? detectTemplateFamily(template) : null,
    },
    fileSize,
    fingerprint: await fingerprintFile(path, fileSize, infoEnd),
    trainable: { ok: reason === null, reason },
    architectureRefusal: archRefusal,
    generalName: typeof general.name === 'string' && general.name ? general.name : null,
  };
}

async function checkMagic(path: string, fileSize: number): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    const magic = buf.subarray(0, bytesRead);
    if (!magic.equals(GGUF_MAGIC)) {
      const shown =
        fileSize === 0
          ? 'the file is empty'
          : `magic bytes ${magic.toString('hex')} ("${printable(magic)}"), expected "GGUF"`;
      throw new OvernightError('INVALID_FILE', `${path} is not a GGUF file (${shown})`);
    }
  } finally {
    await fh.close();
  }
}

function printable(b: Buffer): string {
  return [...b].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('');
}

/** The most common non-F32 tensor type (used when general.file_type is absent). */
function dominantType(tensorTypes: Record<string, number>): string {
  const entries = Object.entries(tensorTypes).filter(([t]) => t !== 'F32');
  if (entries.length === 0) return tensorTypes.F32 ? 'F32' : 'unknown';
  entries.sort((a, b) => b[1] - a[1]);
  return entries[0]![0];
}

/**
 * Content fingerprint, fast on a multi-GB file (reads at most the header + 1 MiB):
 *   sha256( "overnight-fingerprint-v1\0" | file size as u64 LE | bytes [0, infoEnd) |
 *           16 samples of 64 KiB of tensor data at evenly spaced offsets )
 * where infoEnd is the end of the header, metadata, tensor infos and alignment padding.
 * When the tensor data is at most 1 MiB it is hashed whole. Two files with the same
 * fingerprint have the same metadata, tensor layout, size and sampled weights: in practice the
 * same model. Changing the scheme means bumping "v1" (stored fingerprints then no longer match).
 */
export async function fingerprintFile(
  path: string,
  fileSize: number,
  infoEnd: number,
): Promise<string> {
  const SAMPLES = 16;
  const SAMPLE = 64 * 1024;
  const CHUNK = 1024 * 1024;
  const hash = createHash('sha256');
  hash.update('overnight-fingerprint-v1\0');
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(fileSize));
  hash.update(size);

  const fh = await open(path, 'r');
  try {
    const readRange = async (start: number, end: number): Promise<void> => {
      const buf = Buffer.alloc(Math.min(CHUNK, Math.max(0, end - start)));
      for (let pos = start; pos < end;) {
        const n = Math.min(buf.length, end - pos);
        const { bytesRead } = await fh.read(buf, 0, n, pos);
        if (bytesRead <= 0) break;
        hash.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    };
    const headerEnd = Math.min(infoEnd, fileSize);
    await readRange(0, headerEnd);
    const dataLen = fileSize - headerEnd;
    if (dataLen <= SAMPLES * SAMPLE) {
      await readRange(headerEnd, fileSize);
    } else {
      for (let i = 0; i < SAMPLES; i++) {
        const off = headerEnd + Math.floor((i * (dataLen - SAMPLE)) / (SAMPLES - 1));
        await readRange(off, off + SAMPLE);
      }
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}
