/**
 * One entry for every file kind: `readRows(path)` yields the source's rows as JSON values
 * with their line (or row) number, or a problem in a row's stead. The file kind comes from
 * the extension, checked against the first bytes (a `.jsonl` that holds one JSON array is read
 * as JSON; binary data is refused up front). Nothing here knows about dataset formats.
 */
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { readCsv } from './csv.ts';
import { readJsonElements } from './json-stream.ts';
import { readLines } from './lines.ts';
import type { FileKind, RawRow, RowProblem } from './types.ts';

export interface ReadOptions {
  /** Longest line / record held in memory, bytes. 64 MiB: far above any sane record,
   * far below what would hurt a desktop. */
  maxRecordBytes?: number;
  /** Text files: the largest chunk of text per record, characters. */
  textChunkChars?: number;
  onBytes?: (bytesRead: number) => void;
  signal?: AbortSignal;
}
export const defaultMaxRecordBytes = 64 * 1024 * 1024;
export const defaultTextChunkChars = 4000;

const extKinds: Record<string, FileKind> = {
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.json': 'json',
  '.csv': 'csv',
  '.tsv': 'tsv',
  '.tab': 'tsv',
  '.parquet': 'parquet',
  '.pq': 'parquet',
  '.txt': 'text',
  '.text': 'text',
  '.md': 'text',
  '.markdown': 'text',
};

export interface Sniff {
  kind: FileKind;
  size: number;
  /** Set when the file cannot be read as any kind: empty, or binary junk. */
  problem: (RowProblem & { line: number }) | null;
}

/** Decide the file kind from the extension and the first 64 KiB. */
export function sniffFile(path: string, kindOverride?: FileKind): Sniff {
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(Math.min(size, 65536));
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const byExt = extKinds[extname(path).toLowerCase()];
  const isParquet = head.length >= 4 && head.subarray(0, 4).toString('latin1') === 'PAR1';
  let kind: FileKind;
  if (kindOverride) kind = kindOverride;
  else if (isParquet) kind = 'parquet';
  else {
    let i = head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
    while (
      i < head.length &&
      (head[i] === 0x20 || head[i] === 0x0a || head[i] === 0x0d || head[i] === 0x09)
    )
      i++;
    const firstChar = head[i];
    if (byExt === 'jsonl' && firstChar === 0x5b) kind = 'json';
    else if (byExt) kind = byExt;
    else if (firstChar === 0x5b) kind = 'json';
    else if (firstChar === 0x7b) kind = 'jsonl';
    else kind = 'text';
  }
  if (kind !== 'parquet') {
    let nonWs = false;
    for (const b of head) {
      if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) {
        nonWs = true;
        break;
      }
    }
    const bomOnly = head.length === 3 && head[0] === 0xef;
    if (size === 0 || (!nonWs && size === head.length) || (bomOnly && size === 3)) {
      return {
        kind,
        size,
        problem: {
          code: 'empty_file',
          severity: 'error',
          line: 1,
          field: '',
          expected: 'at least one record',
          found: size === 0 ? 'an empty file' : 'only whitespace',
        },
      };
    }
    const nul = head.indexOf(0);
    if (nul >= 0) {
      const line = head.subarray(0, nul).toString('latin1').split('\n').length;
      return {
        kind,
        size,
        problem: {
          code: 'binary_file',
          severity: 'error',
          line,
          field: '',
          expected: `a text file (${kind.toUpperCase()})`,
          found: `binary data (a NUL byte at offset ${nul})`,
        },
      };
    }
  }
  return { kind, size, problem: null };
}

export async function* readRows(
  path: string,
  kind: FileKind,
  opts: ReadOptions = {},
): AsyncGenerator<RawRow> {
  const maxRecordBytes = opts.maxRecordBytes ?? defaultMaxRecordBytes;
  const mb = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  const base = { onBytes: opts.onBytes, signal: opts.signal };
  switch (kind) {
    case 'jsonl':
      for await (const l of readLines(path, { ...base, maxLineBytes: maxRecordBytes })) {
        if ('text' in l) {
          if (l.text.trim() === '') continue;
          try {
            yield { line: l.line, value: JSON.parse(l.text) };
          } catch (e) {
            yield {
              line: l.line,
              problem: {
                code: 'invalid_json',
                severity: 'error',
                field: '',
                expected: 'one JSON object per line',
                found: `invalid JSON: ${(e as Error).message}`,
              },
            };
          }
        } else if (l.error === 'invalid_utf8') {
          yield {
            line: l.line,
            problem: {
              code: 'invalid_utf8',
              severity: 'error',
              field: '',
              expected: 'UTF-8 text',
              found: l.detail,
            },
          };
        } else {
          yield {
            line: l.line,
            problem: {
              code: 'line_too_long',
              severity: 'error',
              field: '',
              expected: `a line of at most ${mb(maxRecordBytes)}`,
              found: `a line of ${mb(l.bytes)}`,
            },
          };
        }
      }
      return;
    case 'json':
      for await (const e of readJsonElements(path, { ...base, maxRecordBytes })) {
        if ('value' in e) yield e;
        else if (e.error === 'invalid_json')
          yield {
            line: e.line,
            problem: {
              code: 'invalid_json',
              severity: 'error',
              field: '',
              expected: 'a JSON array of objects',
              found: `invalid JSON: ${e.detail}`,
            },
          };
        else if (e.error === 'invalid_utf8')
          yield {
            line: e.line,
            problem: {
              code: 'invalid_utf8',
              severity: 'error',
              field: '',
              expected: 'UTF-8 text',
              found: e.detail,
            },
          };
        else
          yield {
            line: e.line,
            problem: {
              code: 'line_too_long',
              severity: 'error',
              field: '',
              expected: `a record of at most ${mb(maxRecordBytes)}`,
              found: 'a larger record',
            },
          };
      }
      return;
    case 'csv':
    case 'tsv':
      for await (const r of readCsv(path, {
        ...base,
        delimiter: kind === 'csv' ? ',' : '\t',
        maxRecordBytes,
      })) {
        if ('value' in r) yield r;
        else
          yield {
            line: r.line,
            problem: {
              code: r.error,
              severity: 'error',
              field: '',
              expected: r.expected,
              found: r.found,
            },
          };
      }
      return;
    case 'parquet':
      yield* readParquet(path, opts);
      return;
    case 'text':
      yield* readTextChunks(path, {
        ...base,
        maxRecordBytes,
        textChunkChars: opts.textChunkChars ?? defaultTextChunkChars,
      });
      return;
  }
}

/** JSON-safe copy of a Parquet value (bigint -> number or string, bytes -> string). */
function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = jsonSafe(x);
    return o;
  }
  return v;
}

/** Parquet, one row group at a time (a row group is the unit Parquet writers bound). */
async function* readParquet(path: string, opts: ReadOptions): AsyncGenerator<RawRow> {
  let file;
  let metadata;
  try {
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    yield {
      line: 1,
      problem: {
        code: 'parquet',
        severity: 'error',
        field: '',
        expected: 'a Parquet file',
        found: (e as Error).message,
      },
    };
    return;
  }
  let rowStart = 0;
  let bytesDone = 0;
  for (const rg of metadata.row_groups) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
    const n = Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = (await parquetReadObjects({
        file,
        metadata,
        rowStart,
        rowEnd: rowStart + n,
      })) as Record<string, unknown>[];
    } catch (e) {
      yield {
        line: rowStart + 1,
        problem: {
          code: 'parquet',
          severity: 'error',
          field: '',
          expected: `a readable row group (rows ${rowStart + 1}-${rowStart + n})`,
          found: (e as Error).message,
        },
      };
      rowStart += n;
      continue;
    }
    for (let i = 0; i < rows.length; i++)
      yield { line: rowStart + i + 1, value: jsonSafe(rows[i]) };
    rowStart += n;
    bytesDone += Number(rg.total_byte_size ?? 0);
    opts.onBytes?.(Math.min(bytesDone, file.byteLength));
  }
  opts.onBytes?.(file.byteLength);
}

/**
 * Plain text / Markdown for continued pre-training: paragraphs (split on blank lines) packed
 * into chunks of at most `textChunkChars` characters; a longer paragraph is split on line
 * breaks, and a longer line on whitespace. Token windows are cut later, per model.
 */
async function* readTextChunks(
  path: string,
  opts: {
    maxRecordBytes: number;
    textChunkChars: number;
    onBytes?: (n: number) => void;
    signal?: AbortSignal;
  },
): AsyncGenerator<RawRow> {
  const cap = opts.textChunkChars;
  let chunk = '';
  let chunkLine = 0;
  let para = '';
  let paraLine = 0;

  function* flushChunk(): Generator<RawRow> {
    if (chunk.trim() !== '') yield { line: chunkLine, value: { text: chunk } };
    chunk = '';
    chunkLine = 0;
  }
  function* addPiece(piece: string, line: number): Generator<RawRow> {
    if (chunk !== '' && chunk.length + 2 + piece.length > cap) yield* flushChunk();
    if (chunk === '') {
      chunkLine = line;
      chunk = piece;
    } else chunk += '\n\n' + piece;
    while (chunk.length > cap) {
      // A single paragraph over the cap: cut at the last line break or space before the cap.
      let cut = chunk.lastIndexOf('\n', cap);
      if (cut < cap / 2) cut = chunk.lastIndexOf(' ', cap);
      if (cut < cap / 2) cut = cap;
      yield { line: chunkLine, value: { text: chunk.slice(0, cut) } };
      chunk = chunk.slice(cut).replace(/^[ \n]/, '');
    }
  }

  for await (const l of readLines(path, {
    maxLineBytes: opts.maxRecordBytes,
    onBytes: opts.onBytes,
    signal: opts.signal,
  })) {
    if (!('text' in l)) {
      yield {
        line: l.line,
        problem:
          l.error === 'invalid_utf8'
            ? {
                code: 'invalid_utf8',
                severity: 'error',
                field: '',
                expected: 'UTF-8 text',
                found: l.detail,
              }
            : {
                code: 'line_too_long',
                severity: 'error',
                field: '',
                expected: `a line of at most ${opts.maxRecordBytes} bytes`,
                found: `${l.bytes} bytes`,
              },
      };
      continue;
    }
    if (l.text.trim() === '') {
      if (para !== '') yield* addPiece(para, paraLine);
      para = '';
      continue;
    }
    if (para === '') {
      paraLine = l.line;
      para = l.text;
    } else para += '\n' + l.text;
    if (para.length >= cap) {
      // bounded memory: a paragraph without blank lines does not grow past one chunk
      yield* addPiece(para, paraLine);
      para = '';
    }
  }
  if (para !== '') yield* addPiece(para, paraLine);
  yield* flushChunk();
}

export function fileLabel(path: string): string {
  return basename(path);
}
