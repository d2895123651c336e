import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { mulberry32 } from './stats.ts';
import { WindowPacker } from './pack.ts';

/** A sink that keeps copies of the windows. */
function collect(): { windows: TokenWindow[]; append(w: TokenWindow): void } {
  const windows: TokenWindow[] = [];
  return {
    windows,
    append: (w) =>
      windows.push({
        tokens: w.tokens.slice(),
        labels: w.labels.slice(),
        segments: w.segments!.slice(),
      }),
  };
}

/** Sample k of length n: tokens k*10000 + position, so every token names its sample and place. */
function sample(k: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => k * 10000 + i + 1);
}

/** Chat-like mask: the first third is the prompt (not trained), the rest the reply. */
function chatMask(n: number): Uint8Array {
  const m = new Uint8Array(n);
  for (let i = Math.floor(n / 3); i < n; i++) m[i] = 1;
  return m;
}

/** The pieces of each window: runs of one segment id, as [segment, from, to). */
function pieces(w: TokenWindow): { seg: number; from: number; to: number }[] {
  const out: { seg: number; from: number; to: number }[] = [];
  const s = w.segments!;
  for (let t = 0; t < s.length; t++) {
    if (s[t]! < 0) continue;
    const last = out.at(-1);
    if (last && last.seg === s[t] && last.to === t) last.to = t + 1;
    else out.push({ seg: s[t]!, from: t, to: t + 1 });
  }
  return out;
}

describe('WindowPacker', () => {
  test('raw text: every window holds exactly seqLen tokens except the last, the text in order, nothing untrained', () => {
    const L = 64;
    const sink = collect();
    const p = new WindowPacker(sink, L);
    // Records of 150 and 20 tokens: cut per record, these made windows of 64, 64, 22 and 20.
    const recs = [sample(1, 150), sample(2, 20), sample(3, 97), sample(4, 1), sample(5, 300)];
    for (const r of recs) p.addText(r, new Uint8Array(r.length).fill(1));
    p.close();
    const ws = sink.windows;
    for (let i = 0; i < ws.length - 1; i++) {
      const used = ws[i]!.segments!.filter((s) => s >= 0).length;
      assert.equal(used, L, `window ${i} holds ${used} of ${L} tokens`);
    }
    // Every token of every record (the 1-token record trains nothing and is left out), in order.
    const all = ws.flatMap((w) => [...w.tokens].filter((_, t) => w.segments![t]! >= 0));
    const expected = recs.filter((r) => r.length > 1).flat();
    assert.deepEqual(all, expected);
    // Labels: the record's next token, also across a window boundary; a record's last token none.
    let trained = 0;
    const flatLabels = ws.flatMap((w) => [...w.labels].filter((_, t) => w.segments![t]! >= 0));
    for (let g = 0; g < expected.length; g++) {
      const sameRecord =
        g + 1 < expected.length &&
        Math.floor(expected[g + 1]! / 10000) === Math.floor(expected[g]! / 10000);
      assert.equal(flatLabels[g], sameRecord ? expected[g + 1] : -1, `label at ${g}`);
      if (sameRecord) trained++;
    }
    assert.equal(p.totals.trained, trained);
    assert.equal(p.totals.windows, ws.length);
    // Each record (each piece of one in a window) is its own segment: no attention across records.
    for (const w of ws)
      for (const { from, to } of pieces(w)) {
        const rec = new Set([...w.tokens.subarray(from, to)].map((t) => Math.floor(t / 10000)));
        assert.equal(rec.size, 1, 'one segment holds one record');
      }
    assert.ok(p.fillRatio > 0.95, `fill ${p.fillRatio}`);
  });

  test('a mixed-length chat set packs to at least 95% full windows', () => {
    const L = 512;
    const rnd = mulberry32(3);
    const sink = collect();
    const p = new WindowPacker(sink, L);
    let tokens = 0;
    for (let k = 0; k < 2000; k++) {
      // Lengths from 12 to 420 tokens, skewed short like instruction sets.
      const n = 12 + Math.floor(408 * rnd() ** 2);
      p.addChat(sample(k, n), chatMask(n));
      tokens += n;
    }
    p.close();
    const fill = tokens / (sink.windows.length * L);
    assert.equal(p.fillRatio, fill);
    assert.ok(fill >= 0.95, `windows are ${(100 * fill).toFixed(1)}% full`);
  });

  test('packed chat records stay isolated: one whole record per segment, labels inside it', () => {
    const L = 128;
    const rnd = mulberry32(9);
    const sink = collect();
    const p = new WindowPacker(sink, L);
    const lengths = new Map<number, number>();
    for (let k = 1; k <= 300; k++) {
      const n = 5 + Math.floor(60 * rnd());
      lengths.set(k, n);
      p.addChat(sample(k, n), chatMask(n));
    }
    p.close();
    const seen = new Set<number>();
    let multi = 0;
    for (const w of sink.windows) {
      const ps = pieces(w);
      if (ps.length > 1) multi++;
      const segIds = new Set(ps.map((x) => x.seg));
      assert.equal(segIds.size, ps.length, 'a segment id is one contiguous run');
      for (const { from, to } of ps) {
        const k = Math.floor(w.tokens[from]! / 10000);
        assert.ok(!seen.has(k), `record ${k} is placed once`);
        seen.add(k);
        assert.equal(to - from, lengths.get(k), `record ${k} is whole`);
        for (let t = from; t < to; t++) {
          assert.equal(w.tokens[t], k * 10000 + (t - from) + 1, 'tokens in order');
          if (w.labels[t]! >= 0) {
            assert.ok(t + 1 < to, 'a label never points past its record');
            assert.equal(w.labels[t], w.tokens[t + 1]);
          }
        }
      }
      // Padding is segment -1 with no label.
      for (let t = 0; t < L; t++) if (w.segments![t]! < 0) assert.equal(w.labels[t], -1);
    }
    assert.equal(seen.size, 300);
    assert.ok(multi > 0, 'records were packed together');
  });

  test('a chat record longer than the window keeps its first seqLen tokens, alone; one with nothing trained there is dropped', () => {
    const L = 32;
    const sink = collect();
    const p = new WindowPacker(sink, L);
    assert.equal(p.addChat(sample(1, 50), chatMask(50)), true);
    const late = new Uint8Array(50);
    late.fill(1, 40);
    assert.equal(p.addChat(sample(2, 50), late), false, 'trained tokens only past seqLen');
    p.close();
    assert.equal(sink.windows.length, 1);
    const w = sink.windows[0]!;
    assert.deepEqual([...w.tokens], sample(1, 32));
    assert.equal(w.labels[L - 1], -1, 'the cut token has no target');
  });
});
