// The numbers of a blind A/B: seeded left/right order, Wilson intervals, win rates from votes,
// exact-match and contains scores.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  contains,
  exactMatch,
  leftVariant,
  wilson,
  winRate,
  winnerOf,
} from '../../core/eval/stats.ts';

describe('blind A/B statistics', () => {
  test('the order is random per item, fixed by the seed', () => {
    const order = (seed: number) => Array.from({ length: 64 }, (_, i) => leftVariant(seed, i));
    assert.deepEqual(order(7), order(7), 'the same seed gives the same order');
    assert.notDeepEqual(order(7), order(8), 'another seed gives another order');
    const bs = order(7).filter((x) => x === 1).length;
    assert.ok(bs > 16 && bs < 48, `both sides occur (${bs} of 64 put B on the left)`);
  });

  test('Wilson score interval: known values', () => {
    // 8 of 10: 0.4902 .. 0.9433 (the textbook example)
    const a = wilson(8, 10);
    assert.ok(
      Math.abs(a.low - 0.4902) < 1e-4 && Math.abs(a.high - 0.9433) < 1e-4,
      JSON.stringify(a),
    );
    const b = wilson(0, 5);
    assert.equal(b.low, 0);
    assert.ok(Math.abs(b.high - 0.4345) < 1e-4, JSON.stringify(b));
    assert.deepEqual(wilson(0, 0), { low: 0, high: 1 });
  });

  test('votes map through the side each variant was shown on', () => {
    assert.equal(winnerOf('left', 1), 1);
    assert.equal(winnerOf('right', 1), 0);
    assert.equal(winnerOf('tie', 0), null);
    const w = winRate([
      { vote: 'left', left: 1 }, // B
      { vote: 'right', left: 0 }, // B
      { vote: 'left', left: 0 }, // A
      { vote: 'tie', left: 0 },
      { vote: 'both-bad', left: 1 },
    ]);
    assert.equal(w.winsB, 2);
    assert.equal(w.winsA, 1);
    assert.equal(w.ties, 1);
    assert.equal(w.bothBad, 1);
    assert.equal(w.rate, 2 / 3);
    assert.deepEqual({ low: w.low, high: w.high }, wilson(2, 3));
    assert.equal(winRate([{ vote: 'tie', left: 0 }]).rate, null);
  });

  test('exact match and contains ignore case and surrounding space', () => {
    assert.ok(exactMatch('  Apple\n', 'apple'));
    assert.ok(!exactMatch('apple pie', 'apple'));
    assert.ok(contains('I think APPLE.', 'apple'));
    assert.ok(!contains('pear', 'apple'));
  });
});
