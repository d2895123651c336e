// Shared helpers of the native trainer tests (tiny generated models, windows, temp dirs).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { defaultBackend, type AdamWOptions, type OpenOptions } from '../../native/ts/binding.ts';
import {
  ROUTE_CHUNK_MIB,
  loraTargets,
  optimizerDefaults,
  runConfigDefaults,
  trainerGpuLayers,
} from '../../contract/runs.ts';

/**
 * Trainer.open options with every value explicit (the binding holds no defaults): the contract's
 * run defaults (rank, alpha, seed, threads, gpuLayers -> trainerGpuLayers), every LoRA target, the
 * 'auto' backward route, one monolithic graph per window (no checkpointing, one loss chunk,
 * microBatch 1); a test overrides what it is about.
 */
export function openOptions(
  o: Pick<OpenOptions, 'modelPath' | 'seqLen'> & Partial<OpenOptions>,
): OpenOptions {
  const backend = o.backend ?? defaultBackend();
  return {
    targets: loraTargets,
    rank: runConfigDefaults.loraRank,
    alpha: runConfigDefaults.loraAlpha,
    seed: runConfigDefaults.seed,
    threads: runConfigDefaults.threads,
    gpuLayers: trainerGpuLayers({ backend, gpuLayers: runConfigDefaults.gpuLayers }),
    backwardRoute: 'auto',
    routeChunkMiB: ROUTE_CHUNK_MIB,
    checkpointing: false,
    lossChunk: 0,
    microBatch: 1,
    backend,
    ...o,
  };
}

/** AdamW options with the contract's optimizer defaults for what the test does not give. */
export function adamw(o: Pick<AdamWOptions, 'lr'> & Partial<AdamWOptions>): AdamWOptions {
  return {
    beta1: optimizerDefaults.adamBeta1,
    beta2: optimizerDefaults.adamBeta2,
    eps: optimizerDefaults.adamEps,
    weightDecay: optimizerDefaults.weightDecay,
    clipNorm: optimizerDefaults.gradClipNorm,
    ...o,
  };
}

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
