/**
 * The windows the trainer trains, built from encoded records: the trainer's input file
 * (stats.ts writeTrainerInput) and the dataset stats (stats.ts tokenStats: window count, fill
 * ratio) run the same packer, so what the stats promise is what the run trains.
 *
 * Rules at sequence length L (one place):
 * - **Text records** (continued pre-training) are one stream. Each record's tokens fill the
 *   current window and go on in the next one, so every window holds exactly L tokens except the
 *   last of the file. A window's last position is labelled with the record's next token even
 *   when that token opens the next window, so no token of the text goes untrained. Each record,
 *   and each piece of a record in a window, is its own segment: positions restart at 0 and
 *   attention stays inside it (a piece that continues a record starts without the record's
 *   earlier context, as a cut window always has).
 * - **Chat records** are packed whole, never split: best fit into a pool of open windows
 *   (`CHAT_POOL_WINDOWS`). A record goes into the open window it fills most tightly; with none
 *   that has room, a new window opens, and when the pool is full the fullest open window is
 *   written first. Each record is one segment (its own positions and attention), so packed
 *   conversations never see each other. At the end every open window is written.
 * - A chat record longer than L keeps its first L tokens and loses the rest (`truncated` in the
 *   stats); if nothing trained is left in those it is dropped. It is not split: a continuation
 *   window would hold the end of a reply without the question it answers, teaching the model to
 *   answer prompts it never saw. Raise the sequence length to keep such records whole.
 * - A record with no trained token (or a window that would train nothing) is left out.
 *
 * Fill ratio = tokens placed in windows / (windows x L): the share of the trained compute that
 * is not padding.
 */
import type { TokenWindow } from '../../native/ts/token-data.ts';

/**
 * Open windows a chat pack keeps to choose from. Best fit over 64 windows fills mixed-length
 * chat sets to 97-99% (core/datasets/pack.test.ts measures 95%+ on a mixed set); the pool costs
 * 64 x L x 12 bytes (6 MiB at L = 8192) and a scan of 64 per record.
 */
export const CHAT_POOL_WINDOWS = 64;

/** Where finished windows go: a TokenDataWriter, or nothing (the stats only count). */
export interface WindowSink {
  append(w: TokenWindow): void;
}

/** A sink that only counts (the stats' pass). */
export const countingSink: WindowSink = { append: () => {} };

class OpenWindow {
  readonly tokens: Int32Array;
  readonly labels: Int32Array;
  readonly segments: Int32Array;
  used = 0;
  seg = 0;
  trained = 0;
  constructor(seqLen: number, pad: number) {
    this.tokens = new Int32Array(seqLen).fill(pad);
    this.labels = new Int32Array(seqLen).fill(-1);
    this.segments = new Int32Array(seqLen).fill(-1);
  }
  get free(): number {
    return this.tokens.length - this.used;
  }
  /**
   * Places tokens[from, to) of a record as one new segment; labels come from the whole record
   * (label = the record's next token where it is trained), so the last piece's label may be a
   * token placed in the next window.
   */
  place(tokens: ArrayLike<number>, mask: ArrayLike<number>, from: number, to: number): void {
    const seg = this.seg++;
    for (let g = from; g < to; g++) {
      const t = this.used++;
      this.tokens[t] = tokens[g]!;
      this.segments[t] = seg;
      if (g + 1 < tokens.length && mask[g + 1] === 1) {
        this.labels[t] = tokens[g + 1]!;
        this.trained++;
      }
    }
  }
}

export interface PackTotals {
  /** Windows written. */
  windows: number;
  /** Tokens placed in them (not padding). */
  tokens: number;
  /** Labelled (trained) positions. */
  trained: number;
}

/** Fill ratio of packed windows: tokens / (windows x seqLen); 0 when there is none. */
export function fillRatio(t: PackTotals, seqLen: number): number {
  return t.windows > 0 ? t.tokens / (t.windows * seqLen) : 0;
}

export class WindowPacker {
  private readonly pool: OpenWindow[] = [];
  private text: OpenWindow | null = null;
  readonly totals: PackTotals = { windows: 0, tokens: 0, trained: 0 };

  constructor(
    private readonly sink: WindowSink,
    readonly seqLen: number,
    private readonly pad = 0,
    private readonly poolSize = CHAT_POOL_WINDOWS,
  ) {
    if (!Number.isInteger(seqLen) || seqLen < 2)
      throw new RangeError(`seqLen must be an integer >= 2 (got ${seqLen})`);
  }

  /** A text record into the stream; false when nothing in it is trained (left out). */
  addText(tokens: ArrayLike<number>, mask: ArrayLike<number>): boolean {
    if (trainedTargets(mask, tokens.length) === 0) return false;
    let from = 0;
    while (from < tokens.length) {
      this.text ??= new OpenWindow(this.seqLen, this.pad);
      const to = Math.min(tokens.length, from + this.text.free);
      this.text.place(tokens, mask, from, to);
      from = to;
      if (this.text.free === 0) {
        this.write(this.text);
        this.text = null;
      }
    }
    return true;
  }

  /**
   * A chat record, whole (its first seqLen tokens: see the header); false when nothing trained
   * is left in them (dropped).
   */
  addChat(tokens: ArrayLike<number>, mask: ArrayLike<number>): boolean {
    const n = Math.min(tokens.length, this.seqLen);
    if (trainedTargets(mask, n) === 0) return false;
    const cut = n < tokens.length ? Array.prototype.slice.call(tokens, 0, n) : tokens;
    // Best fit: the open window this record fills most tightly.
    let best = -1;
    for (let i = 0; i < this.pool.length; i++) {
      const f = this.pool[i]!.free;
      if (f >= n && (best < 0 || f < this.pool[best]!.free)) best = i;
    }
    let w: OpenWindow;
    if (best >= 0) w = this.pool[best]!;
    else {
      if (this.pool.length >= this.poolSize) this.writeFullest();
      w = new OpenWindow(this.seqLen, this.pad);
      this.pool.push(w);
    }
    w.place(cut, mask, 0, n);
    if (w.free === 0) {
      this.pool.splice(this.pool.indexOf(w), 1);
      this.write(w);
    }
    return true;
  }

  /** Writes every open window (the fullest first). */
  close(): void {
    this.pool.sort((a, b) => b.used - a.used);
    for (const w of this.pool.splice(0)) this.write(w);
    if (this.text) this.write(this.text);
    this.text = null;
  }

  get fillRatio(): number {
    return fillRatio(this.totals, this.seqLen);
  }

  private writeFullest(): void {
    let k = 0;
    for (let i = 1; i < this.pool.length; i++) if (this.pool[i]!.used > this.pool[k]!.used) k = i;
    this.write(this.pool.splice(k, 1)[0]!);
  }

  private write(w: OpenWindow): void {
    if (w.trained === 0) return; // e.g. a stream's last piece that is only its end token
    this.sink.append({ tokens: w.tokens, labels: w.labels, segments: w.segments });
    this.totals.windows++;
    this.totals.tokens += w.used;
    this.totals.trained += w.trained;
  }
}

/** Trained targets among the first n positions (position 0 is never a target: nothing precedes it). */
function trainedTargets(mask: ArrayLike<number>, n: number): number {
  let k = 0;
  for (let i = 1; i < n; i++) k += mask[i] === 1 ? 1 : 0;
  return k;
}
