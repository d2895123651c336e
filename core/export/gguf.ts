/**
 * GGUF v3 header reading and writing for exports (format: llama.cpp ggml/include/gguf.h,
 * little-endian). Reads the header, metadata (with each value's exact type, so an adapter can be
 * copied key for key) and tensor infos without reading tensor data; `tensorBytes` reads one
 * tensor. `ggufHeader` builds the header of a new file whose tensor data the caller streams.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { OvernightError } from '../../contract/index.ts';

export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufValue =
  | { type: Exclude<GgufType, GgufType.ARRAY>; value: unknown }
  | { type: GgufType.ARRAY; itemType: GgufType; value: unknown[] };

export const GGML_F32 = 0;
export const GGML_F16 = 1;

export interface GgufTensor {
  name: string;
  /** ggml ne: ne[0] is the contiguous dimension (torch shape reversed). */
  ne: number[];
  type: number;
  /** Offset of the data from the start of the data section. */
  offset: number;
}

export interface GgufHeader {
  path: string;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensor[];
  /** Absolute file offset of the tensor data section. */
  dataOffset: number;
  alignment: number;
  fileSize: number;
}

const MAGIC = 0x46554747; // "GGUF" read little-endian

class Reader {
  pos = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): void {
    if (this.pos + n > this.b.length) throw new RangeError('short');
  }
  u8(): number {
    this.need(1);
    return this.b.readUInt8(this.pos++);
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.b.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  str(): string {
    const n = Number(this.u64());
    this.need(n);
    const s = this.b.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  scalar(t: GgufType): unknown {
    const b = this.b;
    const at = (n: number): number => {
      this.need(n);
      const p = this.pos;
      this.pos += n;
      return p;
    };
    switch (t) {
      case GgufType.UINT8:
        return b.readUInt8(at(1));
      case GgufType.INT8:
        return b.readInt8(at(1));
      case GgufType.UINT16:
        return b.readUInt16LE(at(2));
      case GgufType.INT16:
        return b.readInt16LE(at(2));
      case GgufType.UINT32:
        return b.readUInt32LE(at(4));
      case GgufType.INT32:
        return b.readInt32LE(at(4));
      case GgufType.FLOAT32:
        return b.readFloatLE(at(4));
      case GgufType.FLOAT64:
        return b.readDoubleLE(at(8));
      case GgufType.UINT64:
        return b.readBigUInt64LE(at(8));
      case GgufType.INT64:
        return b.readBigInt64LE(at(8));
      case GgufType.BOOL:
        return b.readUInt8(at(1)) !== 0;
      case GgufType.STRING:
        return this.str();
      default:
        throw new Error(`unknown GGUF value type ${t as number} at byte ${this.pos}`);
    }
  }
}

/** Reads the header of a GGUF file (first 1 MiB, more while the header needs it). */
export function readGgufHeader(path: string): GgufHeader {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new OvernightError('FILE_NOT_FOUND', `cannot open ${path}: ${(err as Error).message}`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    for (let size = Math.min(fileSize, 1 << 20); ; size = Math.min(fileSize, size * 4)) {
      const buf = Buffer.alloc(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, buf, off, size - off, off);
        if (n <= 0) break;
        off += n;
      }
      try {
        return parse(path, buf, fileSize);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        if (size >= fileSize)
          throw new OvernightError(
            'INVALID_FILE',
            `${path} is truncated: its GGUF header runs past the end`,
          );
      }
    }
  } finally {
    closeSync(fd);
  }
}

function parse(path: string, buf: Buffer, fileSize: number): GgufHeader {
  const r = new Reader(buf);
  if (r.u32() !== MAGIC)
    throw new OvernightError('INVALID_FILE', `${path} is not a GGUF file (bad magic)`);
  const version = r.u32();
  if (version !== 2 && version !== 3)
    throw new OvernightError('INVALID_FILE', `${path}: unsupported GGUF version ${version}`);
  const nTensors = Number(r.u64());
  const nKv = Number(r.u64());
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.str();
    const type = r.u32() as GgufType;
    if (type === GgufType.ARRAY) {
      const itemType = r.u32() as GgufType;
      const n = Number(r.u64());
      const value: unknown[] = new Array<unknown>(n);
      for (let j = 0; j < n; j++) value[j] = r.scalar(itemType);
      metadata.set(key, { type, itemType, value });
    } else metadata.set(key, { type, value: r.scalar(type) });
  }
  const tensors: GgufTensor[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = r.str();
    const nd = r.u32();
    const ne: number[] = [];
    for (let j = 0; j < nd; j++) ne.push(Number(r.u64()));
    tensors.push({ name, ne, type: r.u32(), offset: Number(r.u64()) });
  }
  const al = metadata.get('general.alignment');
  const alignment = al ? Number(al.value) : 32;
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  return { path, metadata, tensors, dataOffset, alignment, fileSize };
}

/** A metadata value as a plain JS value (null when absent). */
export function kv(h: GgufHeader, key: string): unknown {
  return h.metadata.get(key)?.value ?? null;
}
export function kvString(h: GgufHeader, key: string): string | null {
  const v = kv(h, key);
  return typeof v === 'string' && v.length > 0 ? v : null;
}
export function kvNumber(h: GgufHeader, key: string): number | null {
  const v = kv(h, key);
  return typeof v === 'number' || typeof v === 'bigint' ? Number(v) : null;
}

/** Bytes of an F32 / F16 tensor (the only types an adapter holds). */
export function tensorByteLength(t: GgufTensor): number {
  const n = t.ne.reduce((a, x) => a * x, 1);
  if (t.type === GGML_F32) return n * 4;
  if (t.type === GGML_F16) return n * 2;
  throw new OvernightError(
    'UNSUPPORTED',
    `tensor ${t.name} has ggml type ${t.type}; adapters hold F32 or F16`,
  );
}

/** One tensor's raw bytes. */
export function tensorBytes(h: GgufHeader, t: GgufTensor): Buffer {
  const len = tensorByteLength(t);
  const start = h.dataOffset + t.offset;
  if (start + len > h.fileSize)
    throw new OvernightError(
      'INVALID_FILE',
      `${h.path} is truncated: tensor ${t.name} runs past the end`,
    );
  const buf = Buffer.alloc(len);
  const fd = openSync(h.path, 'r');
  try {
    let off = 0;
    while (off < len) {
      const n = readSync(fd, buf, off, len - off, start + off);
      if (n <= 0)
        throw new OvernightError('INVALID_FILE', `${h.path}: short read of tensor ${t.name}`);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** One tensor as F32 values (F16 converted). */
export function tensorF32(h: GgufHeader, t: GgufTensor): Float32Array {
  const b = tensorBytes(h, t);
  if (t.type === GGML_F32)
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
  const out = new Float32Array(b.byteLength / 2);
  for (let i = 0; i < out.length; i++) out[i] = f16ToF32(b.readUInt16LE(i * 2));
  return out;
}

// ------------------------------------------------------------------------------------------
// Writing

class Sink {
  private chunks: Buffer[] = [];
  len = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.len += b.length;
  }
  num(n: number, f: (b: Buffer) => void): void {
    const b = Buffer.alloc(n);
    f(b);
    this.push(b);
  }
  u32(v: number): void {
    this.num(4, (b) => b.writeUInt32LE(v));
  }
  u64(v: number | bigint): void {
    this.num(8, (b) => b.writeBigUInt64LE(BigInt(v)));
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  scalar(t: GgufType, v: unknown, key: string): void {
    switch (t) {
      case GgufType.UINT8:
        return this.num(1, (b) => b.writeUInt8(v as number));
      case GgufType.INT8:
        return this.num(1, (b) => b.writeInt8(v as number));
      case GgufType.UINT16:
        return this.num(2, (b) => b.writeUInt16LE(v as number));
      case GgufType.INT16:
        return this.num(2, (b) => b.writeInt16LE(v as number));
      case GgufType.UINT32:
        return this.num(4, (b) => b.writeUInt32LE(v as number));
      case GgufType.INT32:
        return this.num(4, (b) => b.writeInt32LE(v as number));
      case GgufType.FLOAT32:
        return this.num(4, (b) => b.writeFloatLE(v as number));
      case GgufType.FLOAT64:
        return this.num(8, (b) => b.writeDoubleLE(v as number));
      case GgufType.UINT64:
        return this.num(8, (b) => b.writeBigUInt64LE(BigInt(v as bigint)));
      case GgufType.INT64:
        return this.num(8, (b) => b.writeBigInt64LE(BigInt(v as bigint)));
      case GgufType.BOOL:
        return this.num(1, (b) => b.writeUInt8(v ? 1 : 0));
      case GgufType.STRING:
        return this.str(String(v));
      default:
        throw new Error(`GGUF key ${key}: cannot write value type ${t as number}`);
    }
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.len);
  }
}

export const str = (value: string): GgufValue => ({ type: GgufType.STRING, value });
export const u32 = (value: number): GgufValue => ({ type: GgufType.UINT32, value });
export const f32 = (value: number): GgufValue => ({ type: GgufType.FLOAT32, value });
export const strArr = (value: string[]): GgufValue => ({
  type: GgufType.ARRAY,
  itemType: GgufType.STRING,
  value,
});

/**
 * The header (up to the aligned start of tensor data) of a GGUF v3 file holding `tensors` in
 * this order; returns it with each tensor's data offset (data of each tensor padded to alignment).
 */
export function ggufHeader(
  metadata: Map<string, GgufValue>,
  tensors: { name: string; ne: number[]; type: number; bytes: number }[],
): { header: Buffer; offsets: number[]; alignment: number } {
  const al = metadata.get('general.alignment');
  const alignment = al ? Number(al.value) : 32;
  const s = new Sink();
  s.u32(MAGIC);
  s.u32(3);
  s.u64(tensors.length);
  s.u64(metadata.size);
  for (const [k, v] of metadata) {
    s.str(k);
    s.u32(v.type);
    if (v.type === GgufType.ARRAY) {
      s.u32(v.itemType);
      s.u64(v.value.length);
      for (const x of v.value) s.scalar(v.itemType, x, k);
    } else s.scalar(v.type, v.value, k);
  }
  const offsets: number[] = [];
  let off = 0;
  for (const t of tensors) {
    s.str(t.name);
    s.u32(t.ne.length);
    for (const n of t.ne) s.u64(n);
    s.u32(t.type);
    s.u64(off);
    offsets.push(off);
    off = Math.ceil((off + t.bytes) / alignment) * alignment;
  }
  const pad = (alignment - (s.len % alignment)) % alignment;
  s.push(Buffer.alloc(pad));
  return { header: s.bytes(), offsets, alignment };
}

// ------------------------------------------------------------------------------------------
// Half floats (IEEE 754 binary16), for PEFT's F16 option and reading F16 adapters.

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32ToF16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // too small -> 0
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // round to nearest even (may carry into exp)
  return sign | h;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
