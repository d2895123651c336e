/**
 * The import pipeline: read (streamed) -> detect format -> normalise -> validate -> dedupe ->
 * write the normalised records to a temp file while hashing -> rename to `<sha256>.jsonl`.
 *
 * `inspectDataset` runs the same pass without writing (detected format, a preview of the first
 * records, every problem). `importDataset` stores nothing unless the whole pass succeeded and,
 * when any record would be left out (an error-level problem), the caller said
 * `acceptProblems`; on cancel or refusal the temp file is removed. The user's file is only read.
 *
 * Memory: the readers are bounded (one chunk + one record); dedupe keeps one 52-bit number per
 * record (a Map<number, line>, ~40 bytes a record: 40 MB for a million records).
 */
import { createHash, hash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { OvernightError } from '../../contract/errors.ts';
import { detectFormat, normalizeRow, type Detection } from './formats.ts';
import { ProblemCollector, formatProblem, summarizeProblems } from './problems.ts';
import { fileLabel, readRows, sniffFile, type ReadOptions } from './readers.ts';
import type {
  DatasetFormat,
  DatasetStats,
  FieldMapping,
  FileKind,
  NormalizedRecord,
  ProblemReport,
} from './types.ts';

export interface ScanOptions {
  path: string;
  kind?: FileKind;
  format?: DatasetFormat;
  mapping?: FieldMapping;
  /** Records kept for the preview. */
  previewCount?: number;
  problemCap?: number;
  maxRecordBytes?: number;
  textChunkChars?: number;
  signal?: AbortSignal;
  onProgress?: (p: ImportProgress) => void;
}

export interface ImportProgress {
  file: string;
  bytesRead: number;
  totalBytes: number;
  records: number;
}

export interface PreviewRecord {
  line: number;
  source: unknown;
  record: NormalizedRecord | null;
}

export interface ScanCounts {
  /** Rows read from the file (including the bad ones). */
  rows: number;
  /** Records that will be / were imported. */
  valid: number;
  /** Rows left out for an error. */
  invalid: number;
  /** Rows left out as duplicates of an earlier record. */
  duplicates: number;
}

export interface InspectResult {
  file: string;
  path: string;
  size: number;
  kind: FileKind;
  detection: Detection;
  preview: PreviewRecord[];
  problems: ProblemReport;
  counts: ScanCounts;
  stats: DatasetStats;
}

export interface ImportedDataset {
  /** sha256 of the stored normalised JSONL, hex: the dataset's content address. */
  hash: string;
  /** Where the records are stored: `<dataDir>/datasets/<hash>.jsonl`. */
  storedPath: string;
  storedBytes: number;
}

export type ImportResult =
  | ({ status: 'imported' } & InspectResult & ImportedDataset)
  | ({ status: 'needs_confirmation' } & InspectResult);

const sampleRows = 50;

function emptyStats(): DatasetStats {
  return {
    records: 0,
    conversations: 0,
    textRecords: 0,
    messages: 0,
    roles: { system: 0, user: 0, assistant: 0 },
    chars: 0,
  };
}

function addStats(s: DatasetStats, r: NormalizedRecord): void {
  s.records++;
  if ('text' in r) {
    s.textRecords++;
    s.chars += r.text.length;
    return;
  }
  s.conversations++;
  for (const m of r.messages) {
    s.messages++;
    s.roles[m.role]++;
    s.chars += m.content.length;
  }
}

/** 52 bits of a record's SHA-1, as an exact JS number (for the dedupe map; not security:
 * a chance collision among a million records is ~1e-4 and would only drop one record). */
function recordKey(json: string): number {
  const d = hash('sha1', json, 'buffer');
  return d.readUIntBE(0, 6) * 16 + (d[6]! >> 4);
}

export function datasetsDir(dataDir: string): string {
  return join(dataDir, 'datasets');
}
export function storedDatasetPath(dataDir: string, hash: string): string {
  return join(datasetsDir(dataDir), `${hash}.jsonl`);
}

async function scan(
  opts: ScanOptions,
  sink: ((line: string) => Promise<void> | void) | null,
): Promise<InspectResult> {
  const file = fileLabel(opts.path);
  if (!existsSync(opts.path))
    throw new OvernightError('FILE_NOT_FOUND', `${opts.path}: no such file`);
  const sniff = sniffFile(opts.path, opts.kind);
  const problems = new ProblemCollector(file, opts.problemCap);
  const counts: ScanCounts = { rows: 0, valid: 0, invalid: 0, duplicates: 0 };
  const stats = emptyStats();
  const preview: PreviewRecord[] = [];
  const previewCount = opts.previewCount ?? 5;
  const readOpts: ReadOptions = {
    maxRecordBytes: opts.maxRecordBytes,
    textChunkChars: opts.textChunkChars,
    signal: opts.signal,
  };

  if (sniff.problem) {
    problems.add(sniff.problem.line, sniff.problem);
    return {
      file,
      path: opts.path,
      size: sniff.size,
      kind: sniff.kind,
      detection: detectFormat([], sniff.kind, opts.format, opts.mapping),
      preview,
      problems: problems.report(),
      counts,
      stats,
    };
  }

  // Pass 1 (short): sample rows for detection. The generator is closed after the sample.
  const samples: unknown[] = [];
  for await (const row of readRows(opts.path, sniff.kind, readOpts)) {
    if ('value' in row) samples.push(row.value);
    if (samples.length >= sampleRows) break;
  }
  const detection = detectFormat(samples, sniff.kind, opts.format, opts.mapping);

  // Pass 2: the whole file.
  const seen = new Map<number, number>();
  let lastReport = 0;
  const progress = (bytesRead: number) => {
    const now = Date.now();
    if (opts.onProgress && (now - lastReport >= 100 || bytesRead >= sniff.size)) {
      lastReport = now;
      opts.onProgress({ file, bytesRead, totalBytes: sniff.size, records: counts.valid });
    }
  };
  for await (const row of readRows(opts.path, sniff.kind, { ...readOpts, onBytes: progress })) {
    counts.rows++;
    if ('problem' in row) {
      counts.invalid++;
      problems.add(row.line, row.problem);
      continue;
    }
    const { record, problems: rowProblems } = normalizeRow(
      row.value,
      detection.format,
      detection.mapping,
    );
    for (const p of rowProblems) problems.add(row.line, p);
    if (preview.length < previewCount) preview.push({ line: row.line, source: row.value, record });
    if (!record) {
      counts.invalid++;
      continue;
    }
    const json = JSON.stringify(record);
    const key = recordKey(json);
    const firstLine = seen.get(key);
    if (firstLine !== undefined) {
      counts.duplicates++;
      problems.add(row.line, {
        code: 'duplicate',
        severity: 'error',
        field: '',
        expected: 'a record not seen before (duplicates are left out)',
        found: `the same record as line ${firstLine}`,
      });
      continue;
    }
    seen.set(key, row.line);
    counts.valid++;
    addStats(stats, record);
    if (sink) await sink(json + '\n');
  }
  if (counts.rows === 0 && problems.errors === 0) {
    problems.add(1, {
      code: 'empty_file',
      severity: 'error',
      field: '',
      expected: 'at least one record',
      found: 'no records',
    });
  }
  opts.onProgress?.({ file, bytesRead: sniff.size, totalBytes: sniff.size, records: counts.valid });
  return {
    file,
    path: opts.path,
    size: sniff.size,
    kind: sniff.kind,
    detection,
    preview,
    problems: problems.report(),
    counts,
    stats,
  };
}

/** Detect, preview and validate the whole file; store nothing. */
export function inspectDataset(opts: ScanOptions): Promise<InspectResult> {
  return wrapCancel(opts.signal, () => scan(opts, null));
}

export interface ImportOptions extends ScanOptions {
  dataDir: string;
  /** Import the valid records even though some rows have errors (they are left out). */
  acceptProblems?: boolean;
}

async function wrapCancel<T>(signal: AbortSignal | undefined, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (signal?.aborted)
      throw new OvernightError('CANCELLED', 'dataset import cancelled; nothing was stored');
    throw e;
  }
}

/**
 * Import a file: one pass that validates and writes the normalised records to a temp file,
 * then either renames it into place (content-addressed) or removes it.
 */
export async function importDataset(opts: ImportOptions): Promise<ImportResult> {
  const dir = datasetsDir(opts.dataDir);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.import-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  const out = createWriteStream(tmp, { highWaterMark: 8 << 20 }); // room for a few 1 MiB blocks: no wait per block
  const digest = createHash('sha256');
  let bytes = 0;
  let outError: Error | null = null;
  out.on('error', (e) => (outError = e));
  // Lines are batched into ~1 MiB writes: one write per record costs more than the parsing.
  let pending: string[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const block = pending.join('');
    pending = [];
    pendingBytes = 0;
    digest.update(block);
    if (!out.write(block)) await new Promise<void>((r) => out.once('drain', r));
  };
  const sink = async (line: string) => {
    if (outError) throw outError;
    pending.push(line);
    const n = Buffer.byteLength(line);
    bytes += n;
    pendingBytes += n;
    if (pendingBytes >= 1 << 20) await flush();
  };
  const closeOut = async () => {
    await flush();
    await new Promise<void>((resolve, reject) =>
      out.end((e?: Error | null) => (e ? reject(e) : resolve())),
    );
  };
  let result: InspectResult;
  try {
    result = await wrapCancel(opts.signal, () => scan(opts, sink));
    await closeOut();
    if (outError) throw outError;
  } catch (e) {
    // Wait for the stream to close: its open may still be in flight, and would create the
    // file again after an early rm.
    if (!out.closed) {
      await new Promise<void>((r) => {
        out.once('close', () => r());
        out.destroy();
      });
    }
    rmSync(tmp, { force: true });
    throw e;
  }
  const { problems, counts } = result;
  if (counts.valid === 0) {
    rmSync(tmp, { force: true });
    const first = problems.items[0];
    throw new OvernightError(
      'INVALID_FILE',
      `${result.file}: no valid records to import (${summarizeProblems(problems)})${first ? `; first: ${formatProblem(first)}` : ''}`,
    );
  }
  if (problems.errors > 0 && !opts.acceptProblems) {
    rmSync(tmp, { force: true });
    return { status: 'needs_confirmation', ...result };
  }
  const contentHash = digest.digest('hex');
  const storedPath = storedDatasetPath(opts.dataDir, contentHash);
  if (existsSync(storedPath))
    rmSync(tmp, { force: true }); // same content already stored
  else renameSync(tmp, storedPath);
  return { status: 'imported', ...result, hash: contentHash, storedPath, storedBytes: bytes };
}
