// Training checkpoints: one file, written atomically (temp file, fsync, rename, fsync dir), so an
// interrupted write leaves the previous checkpoint intact.
//
// Layout: "OVCKPT01" | u32 jsonBytes | JSON meta (utf8) | zero padding to 8 | optimizer state.
// The state is the trainer's getState() (every LoRA A, B and their AdamW moments, in a fixed
// order); meta holds the step, AdamW step count, data cursor, RNG state and what the state must
// match (model fingerprint, LoRA config, sequence length), plus a sha256 of the state.
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { DataCursor } from './schedule.ts';

const MAGIC = 'OVCKPT01';
export const CHECKPOINT_FILE = 'checkpoint.ovck';

export interface CheckpointMeta {
  version: 1;
  step: number;
  adamT: number;
  cursor: DataCursor;
  rngState: number;
  trainedTokens: number;
  elapsedMs: number;
  /** What the state belongs to; resume refuses a mismatch. */
  match: {
    modelFingerprint: string;
    rank: number;
    alpha: number;
    targets: string[];
    seqLen: number;
    windowsPerStep: number;
    seed: number;
  };
  stateBytes: number;
  stateSha256: string;
}

export class CheckpointError extends Error {
  readonly code = 'E_CHECKPOINT';
}

export function writeCheckpoint(
  path: string,
  meta: Omit<CheckpointMeta, 'stateBytes' | 'stateSha256' | 'version'>,
  state: Buffer,
): CheckpointMeta {
  const full: CheckpointMeta = {
    version: 1,
    ...meta,
    stateBytes: state.length,
    stateSha256: createHash('sha256').update(state).digest('hex'),
  };
  const json = Buffer.from(JSON.stringify(full), 'utf8');
  const head = Buffer.alloc(12);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  const pad = Buffer.alloc((8 - ((12 + json.length) % 8)) % 8);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const b of [head, json, pad, state]) writeSync(fd, b);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  try {
    const dfd = openSync(dirname(path), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    /* directories cannot be fsynced on every platform */
  }
  return full;
}

export function readCheckpoint(pathOrDir: string): {
  meta: CheckpointMeta;
  state: Buffer;
  path: string;
} {
  let path = pathOrDir;
  if (existsSync(join(pathOrDir, CHECKPOINT_FILE))) path = join(pathOrDir, CHECKPOINT_FILE);
  if (!existsSync(path)) throw new CheckpointError(`checkpoint ${pathOrDir} does not exist`);
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new CheckpointError(`cannot read checkpoint ${path}: ${(e as Error).message}`);
  }
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC)
    throw new CheckpointError(`${path} is not an Overnight checkpoint (bad magic)`);
  const jl = buf.readUInt32LE(8);
  if (12 + jl > buf.length) throw new CheckpointError(`${path} is truncated (metadata)`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(buf.toString('utf8', 12, 12 + jl)) as CheckpointMeta;
  } catch {
    throw new CheckpointError(`${path} has corrupt metadata`);
  }
  if (meta.version !== 1)
    throw new CheckpointError(`${path}: unsupported checkpoint version ${String(meta.version)}`);
  const off = 12 + jl + ((8 - ((12 + jl) % 8)) % 8);
  const state = buf.subarray(off);
  if (state.length !== meta.stateBytes)
    throw new CheckpointError(
      `${path} is truncated: ${state.length} of ${meta.stateBytes} state bytes`,
    );
  if (createHash('sha256').update(state).digest('hex') !== meta.stateSha256)
    throw new CheckpointError(`${path} is corrupt (state checksum mismatch)`);
  return { meta, state, path };
}

export function removeStaleTemps(path: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  if (existsSync(tmp)) unlinkSync(tmp);
}
