// Helpers of the merge tests: reading tensors out of GGUF files, the expected merge computed
// independently in TS (test/fixtures/quant.ts dequantizes), and running a merge to completion.
import { closeSync, openSync, readSync } from 'node:fs';
import { GgmlType, readGguf, type GgufFile, type GgufTensorInfo } from '../fixtures/gguf-writer.ts';
import { dequantize, typeInfo } from '../fixtures/quant.ts';
import {
  mergeAdapter,
  type MergeOptions,
  type MergeProgress,
  type MergeResult,
} from '../../native/ts/binding.ts';

export interface GgufWithPath extends GgufFile {
  path: string;
}
export function gguf(path: string): GgufWithPath {
  return { ...readGguf(path), path };
}

export function tensorSize(t: GgufTensorInfo): number {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const { blockSize, typeSize } = typeInfo(t.type);
  return (n / blockSize) * typeSize;
}

export function tensorBytes(f: GgufWithPath, name: string): Buffer {
  const t = f.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`${f.path}: no tensor ${name}`);
  const size = tensorSize(t);
  const buf = Buffer.alloc(size);
  const fd = openSync(f.path, 'r');
  try {
    let off = 0;
    while (off < size) off += readSync(fd, buf, off, size - off, f.dataOffset + t.offset + off);
  } finally {
    closeSync(fd);
  }
  return buf;
}

export function tensorF32(f: GgufWithPath, name: string): Float32Array {
  const t = f.tensors.find((x) => x.name === name)!;
  const n = t.shape.reduce((a, b) => a * b, 1);
  return dequantize(t.type, new Uint8Array(tensorBytes(f, name)), n);
}

/**
 * W + scale * (alpha / r) * B·A in float64 from the base and adapter files, with W's dimensions
 * (ne = [dIn, dOut]; A ne = [dIn, r]; B ne = [r, dOut]).
 */
export function expectedMerge(
  base: GgufWithPath,
  adapter: GgufWithPath,
  name: string,
  scale: number,
): Float32Array {
  const w = tensorF32(base, name);
  const a = tensorF32(adapter, `${name}.lora_a`);
  const b = tensorF32(adapter, `${name}.lora_b`);
  const ai = adapter.tensors.find((x) => x.name === `${name}.lora_a`)!;
  const [dIn, r] = ai.shape as [number, number];
  const dOut = w.length / dIn;
  const alpha = Number(adapter.metadata.get('adapter.lora.alpha')!.value);
  const f = (scale * alpha) / r;
  const out = new Float32Array(w.length);
  for (let o = 0; o < dOut; o++) {
    for (let i = 0; i < dIn; i++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += b[o * r + j]! * a[j * dIn + i]!;
      out[o * dIn + i] = w[o * dIn + i]! + f * s;
    }
  }
  return out;
}

/** max |x - y| / max |y| */
export function relMaxErr(x: Float32Array, y: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < y.length; i++) {
    d = Math.max(d, Math.abs(x[i]! - y[i]!));
    m = Math.max(m, Math.abs(y[i]!));
  }
  return d / m;
}

/** sqrt(mean (x - y)^2) / sqrt(mean y^2) */
export function relRmsErr(x: Float32Array, y: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < y.length; i++) {
    d += (x[i]! - y[i]!) ** 2;
    m += y[i]! ** 2;
  }
  return Math.sqrt(d / m);
}

export interface MergeRun {
  result: MergeResult | null;
  error: (Error & { code?: string }) | null;
  progress: MergeProgress[];
}

/** Runs a merge; `cancelAt` cancels from inside the progress callback at that event. */
export async function runMerge(
  o: MergeOptions,
  cancelAt?: (p: MergeProgress) => boolean,
): Promise<MergeRun> {
  const progress: MergeProgress[] = [];
  let cancel = (): void => {};
  const job = mergeAdapter(o, (p) => {
    progress.push(p);
    if (cancelAt?.(p)) cancel();
  });
  cancel = job.cancel;
  try {
    return { result: await job.promise, error: null, progress };
  } catch (e) {
    return { result: null, error: e as Error & { code?: string }, progress };
  }
}

export const isQuantized = (t: GgmlType): boolean =>
  t !== GgmlType.F32 && t !== GgmlType.F16 && t !== GgmlType.BF16;
