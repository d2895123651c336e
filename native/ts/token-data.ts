// The trainer's input: windows of token ids with per-position labels, in a compact binary file.
//
// File layout (little-endian), version 1:
//   0   8 bytes  magic "OVNTOK01"
//   8   u32      version = 1
//   12  u32      flags: bit 0 = each window carries segment ids
//   16  u32      nWindows
//   20  u32      seqLen (tokens per window)
//   24  u32      headerBytes = 32
//   28  u32      reserved = 0
//   32  windows, each: int32 tokens[seqLen], int32 labels[seqLen], (int32 segments[seqLen] if flag)
// labels[t] is the token the model must predict after reading tokens[0..t] (already shifted),
// or -1 where nothing is trained (prompt, padding). segments[t] >= 0 groups the tokens of one
// sample; tokens attend only within their segment and positions restart at each segment (packing
// several short samples into one window without attention leaking between them). Padding uses
// segment -1 (it only sees other padding) and label -1.
import {
  closeSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  writeSync,
  unlinkSync,
} from 'node:fs';

export const TOKEN_DATA_MAGIC = 'OVNTOK01';
export const TOKEN_DATA_VERSION = 1;
const HEADER_BYTES = 32;
const FLAG_SEGMENTS = 1;

export interface TokenWindow {
  tokens: Int32Array;
  labels: Int32Array;
  /** Per-token segment id (sample index inside the window); absent = one sample per window. */
  segments?: Int32Array;
  /** Optional: mask[t] = 0 marks position t as not trained whatever labels[t] holds (not stored in files). */
  mask?: Int32Array;
}

export class TokenDataError extends Error {
  readonly code = 'E_DATA';
}

function header(nWindows: number, seqLen: number, segments: boolean): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.write(TOKEN_DATA_MAGIC, 0, 'latin1');
  h.writeUInt32LE(TOKEN_DATA_VERSION, 8);
  h.writeUInt32LE(segments ? FLAG_SEGMENTS : 0, 12);
  h.writeUInt32LE(nWindows, 16);
  h.writeUInt32LE(seqLen, 20);
  h.writeUInt32LE(HEADER_BYTES, 24);
  return h;
}

/** Streaming writer: windows are appended, the file appears atomically on close(). */
export class TokenDataWriter {
  private fd: number;
  private n = 0;
  private readonly tmp: string;
  constructor(
    readonly path: string,
    readonly seqLen: number,
    readonly withSegments = false,
  ) {
    if (!Number.isInteger(seqLen) || seqLen < 2)
      throw new TokenDataError(`seqLen must be an integer >= 2 (got ${seqLen})`);
    this.tmp = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.tmp, 'w');
    writeSync(this.fd, header(0, seqLen, withSegments));
  }
  append(w: TokenWindow): void {
    const L = this.seqLen;
    if (w.tokens.length !== L || w.labels.length !== L) {
      throw new TokenDataError(
        `window ${this.n}: tokens (${w.tokens.length}) and labels (${w.labels.length}) must both have seqLen ${L} entries`,
      );
    }
    if (this.withSegments && (!w.segments || w.segments.length !== L)) {
      throw new TokenDataError(`window ${this.n}: segments must have seqLen ${L} entries`);
    }
    for (let i = 0; i < L; i++) {
      if (w.tokens[i]! < 0)
        throw new TokenDataError(
          `window ${this.n}: token ${w.tokens[i]} at position ${i} is negative`,
        );
      if (w.labels[i]! < -1)
        throw new TokenDataError(
          `window ${this.n}: label ${w.labels[i]} at position ${i} is below -1`,
        );
    }
    const write = (a: Int32Array) =>
      writeSync(this.fd, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    write(w.tokens);
    write(w.labels);
    if (this.withSegments) write(w.segments!);
    this.n++;
  }
  get count(): number {
    return this.n;
  }
  close(): void {
    writeSync(this.fd, header(this.n, this.seqLen, this.withSegments), 0, HEADER_BYTES, 0);
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(this.tmp, this.path);
  }
  abort(): void {
    try {
      closeSync(this.fd);
      unlinkSync(this.tmp);
    } catch {
      /* already gone */
    }
  }
}

export function writeTokenData(
  path: string,
  seqLen: number,
  windows: Iterable<TokenWindow>,
  withSegments = false,
): number {
  const w = new TokenDataWriter(path, seqLen, withSegments);
  try {
    for (const win of windows) w.append(win);
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  return w.count;
}

/** Random-access reader; validates the header and the file size on open. */
export class TokenDataReader {
  readonly nWindows: number;
  readonly seqLen: number;
  readonly hasSegments: boolean;
  private fd: number;
  private readonly windowBytes: number;
  constructor(readonly path: string) {
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new TokenDataError(`token data file ${path} does not exist`);
    }
    this.fd = openSync(path, 'r');
    const h = Buffer.alloc(HEADER_BYTES);
    const got = readSync(this.fd, h, 0, HEADER_BYTES, 0);
    const fail = (msg: string) => {
      closeSync(this.fd);
      return new TokenDataError(`${path}: ${msg}`);
    };
    if (got < HEADER_BYTES || h.toString('latin1', 0, 8) !== TOKEN_DATA_MAGIC)
      throw fail(`not an Overnight token data file (magic ${TOKEN_DATA_MAGIC} expected)`);
    const version = h.readUInt32LE(8);
    if (version !== TOKEN_DATA_VERSION)
      throw fail(`unsupported version ${version} (expected ${TOKEN_DATA_VERSION})`);
    const flags = h.readUInt32LE(12);
    this.nWindows = h.readUInt32LE(16);
    this.seqLen = h.readUInt32LE(20);
    if (h.readUInt32LE(24) !== HEADER_BYTES) throw fail('bad header size');
    this.hasSegments = (flags & FLAG_SEGMENTS) !== 0;
    if (this.seqLen < 2) throw fail(`seqLen ${this.seqLen} is below 2`);
    this.windowBytes = this.seqLen * 4 * (this.hasSegments ? 3 : 2);
    const want = HEADER_BYTES + this.nWindows * this.windowBytes;
    if (size !== want)
      throw fail(`file has ${size} bytes, the header describes ${want} (truncated or corrupt)`);
  }
  read(i: number): TokenWindow {
    if (!Number.isInteger(i) || i < 0 || i >= this.nWindows)
      throw new TokenDataError(`window ${i} is out of range [0, ${this.nWindows})`);
    const buf = Buffer.alloc(this.windowBytes);
    readSync(this.fd, buf, 0, this.windowBytes, HEADER_BYTES + i * this.windowBytes);
    const all = new Int32Array(buf.buffer, buf.byteOffset, this.windowBytes / 4);
    const L = this.seqLen;
    const w: TokenWindow = { tokens: all.slice(0, L), labels: all.slice(L, 2 * L) };
    if (this.hasSegments) w.segments = all.slice(2 * L, 3 * L);
    return w;
  }
  /** Number of positions with a label (trained tokens) in window i. */
  trainedTokens(i: number): number {
    let n = 0;
    for (const l of this.read(i).labels) if (l >= 0) n++;
    return n;
  }
  close(): void {
    closeSync(this.fd);
  }
}

export interface Sample {
  /** The sample's token ids (prompt and answer). */
  tokens: ArrayLike<number>;
  /** trainMask[t] true = tokens[t] is a target (e.g. an assistant token). */
  trainMask: ArrayLike<boolean | number>;
}

/**
 * Builds windows from samples. mode 'single': one sample per window (padded). mode 'pack':
 * consecutive samples share a window with separate segment ids (no attention between them).
 * A sample longer than seqLen is truncated. Label at t = tokens[t+1] when trainMask[t+1].
 */
export function buildWindows(
  samples: Iterable<Sample>,
  seqLen: number,
  mode: 'single' | 'pack',
  padToken = 0,
): TokenWindow[] {
  const out: TokenWindow[] = [];
  let cur: TokenWindow | null = null;
  let used = 0;
  let seg = 0;
  const fresh = (): TokenWindow => ({
    tokens: new Int32Array(seqLen).fill(padToken),
    labels: new Int32Array(seqLen).fill(-1),
    segments: new Int32Array(seqLen).fill(-1),
  });
  for (const s of samples) {
    const n = Math.min(s.tokens.length, seqLen);
    if (n < 2) continue;
    if (!cur || mode === 'single' || used + n > seqLen) {
      if (cur) out.push(cur);
      cur = fresh();
      used = 0;
      seg = 0;
    }
    for (let t = 0; t < n; t++) {
      cur.tokens[used + t] = s.tokens[t]!;
      cur.segments![used + t] = seg;
      cur.labels[used + t] = t + 1 < n && s.trainMask[t + 1] ? s.tokens[t + 1]! : -1;
    }
    used += n;
    seg++;
  }
  if (cur) out.push(cur);
  return out;
}
