// The trainer's placement report of a run (nodes per ggml backend, ops left on the CPU with the
// reason), kept as `placement.json` in the run folder: the supervisor writes it when the trainer
// reports 'ready' (each start overwrites it), `runs.show` reads it back.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunPlacement } from '../../contract/index.ts';
import { runPlacementSchema } from '../../contract/index.ts';

export const placementFile = 'placement.json';

/** Write atomically (temp file + rename): a reader never sees half a report. */
export function writePlacement(folder: string, placement: RunPlacement): void {
  const path = join(folder, placementFile);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(placement, null, 2)}\n`);
  renameSync(tmp, path);
}

/** The run's report; null when none was written (trainer never ready) or it does not parse. */
export function readPlacement(folder: string): RunPlacement | null {
  const path = join(folder, placementFile);
  if (!existsSync(path)) return null;
  try {
    const r = runPlacementSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
