// Learning-rate schedules and the deterministic data order of a training run.
// Everything here is pure and serialisable, so a checkpoint can restore it exactly.

export type LrScheduleType = 'constant' | 'linear' | 'cosine';

export interface LrSchedule {
  type: LrScheduleType;
  lr: number;
  /**
   * Optimizer steps of linear warm-up: step k (0-based) < warmupSteps trains at
   * lr * (k + 1) / warmupSteps, so the first at lr / warmupSteps (never 0) and the last at lr.
   */
  warmupSteps: number;
  /** Floor of the linear and cosine decays. */
  minLr: number;
  totalSteps: number;
}

/** Learning rate of optimizer step `step` (0-based). */
export function lrAt(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  if (s.type === 'constant') return s.lr;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const p = Math.min(1, Math.max(0, (step - s.warmupSteps) / span));
  if (s.type === 'linear') return s.minLr + (s.lr - s.minLr) * (1 - p);
  return s.minLr + (s.lr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * p));
}

/** mulberry32: a tiny PRNG whose whole state is one uint32 (stored in checkpoints). */
export function mulberry32(state: number): { next(): number; state(): number } {
  let a = state >>> 0;
  return {
    next() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
    state() {
      return a;
    },
  };
}

/** The window order of one epoch: a seeded Fisher-Yates permutation (same seed+epoch, same order). */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const rng = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

/** Position in the data: epoch and index into that epoch's order. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/** Takes `count` window ids from the cursor, crossing epochs as needed; returns the new cursor. */
export function takeWindows(
  n: number,
  seed: number,
  cur: DataCursor,
  count: number,
): { ids: number[]; next: DataCursor } {
  const ids: number[] = [];
  let { epoch, index } = cur;
  let order = epochOrder(n, seed, epoch);
  while (ids.length < count) {
    if (index >= n) {
      epoch++;
      index = 0;
      order = epochOrder(n, seed, epoch);
    }
    ids.push(order[index++]!);
  }
  return { ids, next: { epoch, index } };
}
