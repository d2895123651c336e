// Shared helpers of the native trainer tests (tiny generated models, windows, temp dirs).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TokenWindow } from '../../native/ts/token-data.ts';

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random window: tokens in [lo, hi), labels = next token where trained. */
export function randomWindow(
  seqLen: number,
  seed: number,
  opts: { lo?: number; hi?: number; maskFirst?: number } = {},
): TokenWindow {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const lo = opts.lo ?? 100;
  const hi = opts.hi ?? 1000;
  const tokens = new Int32Array(seqLen);
  for (let i = 0; i < seqLen; i++) tokens[i] = lo + Math.floor(rnd() * (hi - lo));
  const labels = new Int32Array(seqLen).fill(-1);
  const maskFirst = opts.maskFirst ?? 0;
  for (let i = maskFirst; i < seqLen - 1; i++) labels[i] = tokens[i + 1]!;
  return { tokens, labels };
}

export function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

export function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(1e-30, Math.sqrt(den));
}
