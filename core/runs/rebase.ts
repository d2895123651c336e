/**
 * Resuming with a shorter sequence after an out-of-memory. The trainer's checkpoint records the
 * sequence length it was made with and refuses a job with another one. Its LoRA weights and
 * AdamW moments do not depend on the sequence length; only the data cursor does (windows of
 * another length are other windows). A rebased checkpoint keeps the state, step, RNG and token
 * count, records the new length, and moves the cursor to the same share of the epoch in the new
 * window count. It is written beside the original, never over it.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { readCheckpoint, writeCheckpoint } from '../training/checkpoint.ts';

export function checkpointSeqLen(path: string): number {
  return readCheckpoint(path).meta.match.seqLen;
}

export function rebaseCheckpoint(
  src: string,
  dest: string,
  to: { seqLen: number; oldWindows: number; newWindows: number },
): void {
  const { meta, state } = readCheckpoint(src);
  const share = to.oldWindows > 0 ? meta.cursor.index / to.oldWindows : 0;
  writeCheckpoint(
    dest,
    {
      step: meta.step,
      adamT: meta.adamT,
      cursor: {
        epoch: meta.cursor.epoch,
        index: Math.min(to.newWindows, Math.round(share * to.newWindows)),
      },
      rngState: meta.rngState,
      trainedTokens: meta.trainedTokens,
      elapsedMs: meta.elapsedMs,
      match: { ...meta.match, seqLen: to.seqLen },
    },
    state,
  );
}

/**
 * The checkpoint to resume from at `to.seqLen`: `src` itself when it was made with that length
 * and the data has as many windows as before, else a rebased copy written to `dest` (the
 * supervisor after an out-of-memory fallback or after the trainer input was written again with
 * another window count, e.g. by a newer packer; an export of a checkpoint from before one).
 */
export function checkpointAtSeqLen(
  src: string,
  dest: string,
  to: { seqLen: number; oldWindows: number; newWindows: number },
): string {
  if (checkpointSeqLen(src) === to.seqLen && to.oldWindows === to.newWindows) return src;
  mkdirSync(dirname(dest), { recursive: true });
  rebaseCheckpoint(src, dest, to);
  return dest;
}
