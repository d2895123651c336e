/**
 * The numbers of a blind A/B evaluation: the seeded left/right order of each item, the win rate
 * with its 95% Wilson score interval, and exact-match / contains scores against references.
 */
import type { VoteChoice, WinRate } from '../../contract/index.ts';

/** mulberry32: a small seeded PRNG (32-bit state). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Which variant item `index` shows on the left (0 = A, 1 = B), from the set's seed alone. */
export function leftVariant(orderSeed: number, index: number): 0 | 1 {
  const r = mulberry32((orderSeed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  r();
  return r() < 0.5 ? 0 : 1;
}

/** The variant a vote favours (0 = A, 1 = B), or null for tie / both bad. */
export function winnerOf(vote: VoteChoice, left: 0 | 1): 0 | 1 | null {
  if (vote === 'left') return left;
  if (vote === 'right') return left === 0 ? 1 : 0;
  return null;
}

/** Wilson score interval for `wins` successes out of `n` at z (1.96: 95%). */
export function wilson(wins: number, n: number, z = 1.96): { low: number; high: number } {
  if (n === 0) return { low: 0, high: 1 };
  const p = wins / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return { low: Math.max(0, center - half), high: Math.min(1, center + half) };
}

export function winRate(votes: { vote: VoteChoice; left: 0 | 1 }[]): WinRate {
  let winsA = 0;
  let winsB = 0;
  let ties = 0;
  let bothBad = 0;
  for (const v of votes) {
    if (v.vote === 'tie') ties++;
    else if (v.vote === 'both-bad') bothBad++;
    else if (winnerOf(v.vote, v.left) === 1) winsB++;
    else winsA++;
  }
  const n = winsA + winsB;
  if (n === 0) return { rate: null, low: null, high: null, winsA, winsB, ties, bothBad };
  const { low, high } = wilson(winsB, n);
  return { rate: winsB / n, low, high, winsA, winsB, ties, bothBad };
}

const norm = (s: string): string => s.trim().replace(/\s+/g, ' ').toLowerCase();

export function exactMatch(answer: string, reference: string): boolean {
  return norm(answer) === norm(reference);
}

export function contains(answer: string, reference: string): boolean {
  return norm(answer).includes(norm(reference));
}
