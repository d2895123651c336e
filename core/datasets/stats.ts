/**
 * Token statistics of a stored dataset under one model: records, total and trained tokens, a
 * token-length histogram, and what a sequence length would do (truncate / drop / windows and
 * how full they are); the seeded train/validation split; and the trainer's input file (windows
 * of tokens + labels, the native trainer's format, `native/ts/token-data.ts`).
 *
 * Windows come from one packer (pack.ts, which states the sequence-length rules) for the stats
 * and the trainer input alike: text records are streamed into full windows, chat records are
 * packed whole (truncated past seqLen), a record with no trained tokens is dropped.
 */
import { TokenDataWriter } from '../../native/ts/token-data.ts';
import { countingSink, WindowPacker } from './pack.ts';
import { readStoredRecords } from './records.ts';
import { RecordEncoder, TemplateError, type EncodedRecord } from './tokenize.ts';
import type { NormalizedRecord } from './types.ts';

export interface Histogram {
  /** Bucket i counts records with edges[i] <= tokens < edges[i+1]. */
  edges: number[];
  counts: number[];
}

export interface TokenStats {
  records: number;
  totalTokens: number;
  trainedTokens: number;
  maxTokens: number;
  meanTokens: number;
  /** Records with zero trained tokens (they train nothing): count and the first indexes. */
  zeroTrained: number;
  zeroTrainedSample: number[];
  /** Records the template could not render (count, first messages). */
  renderErrors: number;
  renderErrorSample: { index: number; message: string }[];
  /** Records whose turn boundaries needed the fallback (see tokenize.ts). */
  unstableBoundaries: number;
  histogram: Histogram;
  seqLen: number;
  /** Chat records longer than seqLen (cut, still trained). */
  truncated: number;
  /** Records left out at seqLen: nothing trained within the first seqLen tokens. */
  dropped: number;
  /** Windows of seqLen the packed dataset makes (pack.ts), training and validation together. */
  windows: number;
  /** Trained (labelled) positions in those windows: what survives truncation at seqLen. */
  trainedTokensAtSeqLen: number;
  /** Tokens in the windows / (windows x seqLen): the share of the windows that is not padding. */
  fillRatio: number;
}

/** Bucket width 1, 2 or 5 × 10^k so that the histogram has at most `maxBuckets` buckets. */
export function histogram(lengths: ArrayLike<number>, maxBuckets = 24): Histogram {
  let max = 0;
  for (let i = 0; i < lengths.length; i++) max = Math.max(max, lengths[i]!);
  // Widths 1, 2, 5, 10, 20, 50, ...: the first with at most maxBuckets buckets.
  let width = 1;
  const steps = [1, 2, 5];
  for (let e = 0; ; e++) {
    const w = steps.map((s) => s * 10 ** e).find((w) => w * maxBuckets > max);
    if (w !== undefined) {
      width = w;
      break;
    }
  }
  // Start at the bucket of the shortest record: no run of empty buckets on the left.
  let min = max;
  for (let i = 0; i < lengths.length; i++) min = Math.min(min, lengths[i]!);
  const first = Math.floor(min / width);
  const n = Math.max(1, Math.floor(max / width) + 1 - first);
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < lengths.length; i++) counts[Math.floor(lengths[i]! / width) - first]!++;
  return { edges: Array.from({ length: n + 1 }, (_, i) => (first + i) * width), counts };
}

/** Tokenizing is synchronous native work: give the event loop a turn every ~20 ms so the
 * engine (IPC, WebSocket, other requests) stays responsive during a long pass. */
function yielder(): () => Promise<void> {
  let last = performance.now();
  return async () => {
    if (performance.now() - last < 20) return;
    await new Promise<void>((r) => setImmediate(r));
    last = performance.now();
  };
}

export interface StatsOptions {
  seqLen: number;
  signal?: AbortSignal;
  onProgress?: (done: number) => void;
}

/** Token statistics over records (a stored dataset file or an array). */
export async function tokenStats(
  records: AsyncIterable<NormalizedRecord> | Iterable<NormalizedRecord>,
  encoder: RecordEncoder,
  opts: StatsOptions,
): Promise<TokenStats> {
  const lengths: number[] = [];
  const s: TokenStats = {
    records: 0,
    totalTokens: 0,
    trainedTokens: 0,
    maxTokens: 0,
    meanTokens: 0,
    zeroTrained: 0,
    zeroTrainedSample: [],
    renderErrors: 0,
    renderErrorSample: [],
    unstableBoundaries: 0,
    histogram: { edges: [0, 1], counts: [0] },
    seqLen: opts.seqLen,
    truncated: 0,
    dropped: 0,
    windows: 0,
    trainedTokensAtSeqLen: 0,
    fillRatio: 0,
  };
  const packer = new WindowPacker(countingSink, opts.seqLen);
  let index = 0;
  const breathe = yielder();
  for await (const rec of records) {
    await breathe();
    const i = index++;
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
    s.records++;
    let enc: EncodedRecord;
    try {
      enc = encoder.encode(rec);
    } catch (e) {
      if (!(e instanceof TemplateError)) throw e;
      s.renderErrors++;
      s.dropped++;
      if (s.renderErrorSample.length < 20)
        s.renderErrorSample.push({ index: i, message: e.message });
      continue;
    }
    const n = enc.tokens.length;
    lengths.push(n);
    s.totalTokens += n;
    s.trainedTokens += enc.trained;
    s.maxTokens = Math.max(s.maxTokens, n);
    if (enc.unstableBoundaries > 0) s.unstableBoundaries++;
    if (enc.trained === 0) {
      s.zeroTrained++;
      if (s.zeroTrainedSample.length < 20) s.zeroTrainedSample.push(i);
    }
    const kept = addRecord(packer, rec, enc);
    if (!kept) s.dropped++;
    else if (!('text' in rec) && n > opts.seqLen) s.truncated++;
    if (i % 256 === 0 && i > 0) opts.onProgress?.(i);
  }
  packer.close();
  s.windows = packer.totals.windows;
  s.trainedTokensAtSeqLen = packer.totals.trained;
  s.fillRatio = packer.fillRatio;
  s.meanTokens = lengths.length ? s.totalTokens / lengths.length : 0;
  s.histogram = histogram(lengths);
  opts.onProgress?.(index);
  return s;
}

/** Deterministic PRNG (mulberry32): the same seed gives the same split on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Seeded split by record: a Fisher-Yates shuffle of the indexes, the first
 * round(n × share) go to validation (at least 1 when share > 0 and n >= 2). Returns a flag per
 * record: true = validation.
 */
export function splitRecords(n: number, validationShare: number, seed: number): Uint8Array {
  const isVal = new Uint8Array(n);
  if (validationShare <= 0 || n < 2) return isVal;
  const nVal = Math.min(n - 1, Math.max(1, Math.round(n * validationShare)));
  const idx = Array.from({ length: n }, (_, i) => i);
  const rnd = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  for (let k = 0; k < nVal; k++) isVal[idx[k]!] = 1;
  return isVal;
}

export interface TrainerInputOptions {
  seqLen: number;
  validationShare: number;
  seed: number;
  padToken?: number;
  signal?: AbortSignal;
}

export interface TrainerInputResult {
  trainWindows: number;
  validationWindows: number;
  /** Trained (labelled) positions in the training file. */
  trainedTokens: number;
  validationTrainedTokens: number;
  records: number;
  validationRecords: number;
  dropped: number;
  /** Fill ratio of the training windows (pack.ts). */
  fillRatio: number;
}

/** A record into the packer by its kind (pack.ts); false when it is dropped. */
function addRecord(packer: WindowPacker, rec: NormalizedRecord, enc: EncodedRecord): boolean {
  return 'text' in rec
    ? packer.addText(enc.tokens, enc.mask)
    : packer.addChat(enc.tokens, enc.mask);
}

/**
 * Write the trainer's input once: `train.tokens` (and `validation.tokens` when the split has
 * a validation part) in the run folder, in the native trainer's token-data format.
 */
export async function writeTrainerInput(
  storedPath: string,
  encoder: RecordEncoder,
  trainPath: string,
  validationPath: string | null,
  opts: TrainerInputOptions,
): Promise<TrainerInputResult> {
  let n = 0;
  for await (const _ of readStoredRecords(storedPath, opts.signal)) n++;
  const isVal = splitRecords(n, validationPath ? opts.validationShare : 0, opts.seed);
  const trainW = new TokenDataWriter(trainPath, opts.seqLen, true);
  const valW =
    validationPath && isVal.some((v) => v === 1)
      ? new TokenDataWriter(validationPath, opts.seqLen, true)
      : null;
  const train = new WindowPacker(trainW, opts.seqLen, opts.padToken ?? 0);
  const val = valW ? new WindowPacker(valW, opts.seqLen, opts.padToken ?? 0) : null;
  const res: TrainerInputResult = {
    trainWindows: 0,
    validationWindows: 0,
    trainedTokens: 0,
    validationTrainedTokens: 0,
    records: n,
    validationRecords: 0,
    dropped: 0,
    fillRatio: 0,
  };
  try {
    let i = 0;
    const breathe = yielder();
    for await (const rec of readStoredRecords(storedPath, opts.signal)) {
      await breathe();
      const toVal = isVal[i++] === 1 && val !== null;
      if (toVal) res.validationRecords++;
      let enc: EncodedRecord;
      try {
        enc = encoder.encode(rec);
      } catch (e) {
        if (!(e instanceof TemplateError)) throw e;
        res.dropped++;
        continue;
      }
      if (!addRecord(toVal ? val! : train, rec, enc)) res.dropped++;
    }
    train.close();
    val?.close();
    trainW.close();
    valW?.close();
  } catch (e) {
    trainW.abort();
    valW?.abort();
    throw e;
  }
  res.trainWindows = trainW.count;
  res.validationWindows = valW?.count ?? 0;
  res.trainedTokens = train.totals.trained;
  res.validationTrainedTokens = val?.totals.trained ?? 0;
  res.fillRatio = train.fillRatio;
  return res;
}
