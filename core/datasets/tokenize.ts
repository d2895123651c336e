/**
 * What will be trained: render a record with the model's own chat template (the GGUF's
 * `tokenizer.chat_template`, a Jinja template), tokenize it with the model's vocabulary, and
 * build the label mask.
 *
 * The mask comes from token positions of rendered turns, never from searching the text for
 * the reply: for assistant turn i we render the conversation up to turn i with the generation
 * prompt (`P_i`) and through turn i (`Q_i`), tokenize both, and the assistant span is the
 * tokens of the full rendering between |tokens(P_i)| and |tokens(Q_i)|, cut after the first
 * end-of-generation token (so `<|im_end|>` is trained, the `\n` the template puts after it is
 * not). When a prefix does not tokenize to a prefix of the full tokens (a merge across the
 * boundary, or a template that renders a turn differently once it is no longer last), the
 * start falls back to a differential render (the same turns with the reply emptied) and the
 * record is flagged (`unstableBoundaries`).
 *
 * Fast path: when the token pieces (each token's text in place, tokenPieces) spell the
 * rendered text, the prefixes' lengths are mapped onto the full tokens' boundaries instead of
 * tokenizing each prefix (same result where it applies; tests compare both paths).
 *
 * Raw text records: BOS (if the model wants it) + text + EOS, every token trained; the text is
 * tokenized as data (special-token text in it is not parsed as special).
 *
 * Not here: loading weights. The model is loaded vocab-only (no tensors), enough to tokenize.
 */
import { Template } from '@huggingface/jinja';
import type { Message, NormalizedRecord } from './types.ts';

export type MaskMode = 'assistant' | 'all' | 'last';

/** What the masker needs from a model's vocabulary (implemented over node-llama-cpp below). */
export interface Vocab {
  /** Tokenize; `special`: parse special-token text (template markup) into special tokens. No BOS added. */
  tokenize(text: string, special: boolean): number[];
  /** Text of tokens, special tokens written out. */
  detokenize(tokens: readonly number[]): string;
  /** End-of-generation token (eos, eot, <|im_end|>, <|end|>, ...). */
  isEog(token: number): boolean;
  /** Control / special token (shown as such in the preview). */
  isSpecial(token: number): boolean;
  bos: number | null;
  eos: number | null;
  bosText: string;
  eosText: string;
  /** The model wants a BOS token at the start of every sequence. */
  addBos: boolean;
  /** The tokenizer writes a space before text at the start and after every special token
   * (SentencePiece's `add_space_prefix`): the preview and the fast path take it out again. */
  spacePrefix?: boolean;
  /** The GGUF's `tokenizer.chat_template`, or null. */
  chatTemplate: string | null;
}

export interface EncodedRecord {
  tokens: number[];
  /** 1 = trained (the model learns to predict this token), 0 = context only. */
  mask: Uint8Array;
  trained: number;
  /** Assistant turns whose boundaries did not tokenize as prefixes (see the header). */
  unstableBoundaries: number;
  /** The rendered text (chat records) or the text itself. */
  rendered: string;
}

export class TemplateError extends Error {}

/** Renders messages with a GGUF chat template the way llama.cpp / HF transformers do. */
export class ChatRenderer {
  private readonly template: Template;
  constructor(
    readonly source: string,
    private readonly bosText: string,
    private readonly eosText: string,
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new TemplateError(`the model's chat template does not parse: ${(e as Error).message}`);
    }
  }
  render(messages: readonly Message[], addGenerationPrompt: boolean): string {
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bosText,
        eos_token: this.eosText,
        // Llama 3.x templates print a date: a fixed one keeps renders reproducible.
        // (raise_exception and strftime_now are built into @huggingface/jinja.)
        date_string: '26 Jul 2024',
      });
    } catch (e) {
      if (e instanceof TemplateError) throw e;
      throw new TemplateError(`the chat template failed: ${(e as Error).message}`);
    }
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Token boundaries of a rendering as character offsets; `valid[k]` is 0 inside a character. */
interface Boundaries {
  offs: Int32Array;
  valid: Uint8Array;
}

/** The first valid index k with offs[k] === pos, or -1 (offs is non-decreasing). Equal
 * offsets: the inside of a character (not valid), and zero-width tokens (our own BOS at 0, a
 * space the tokenizer wrote before the text after a special token): those belong to what
 * follows, so the boundary is before them. */
function boundaryIndex(offs: Int32Array, valid: Uint8Array, pos: number): number {
  let lo = 0;
  let hi = offs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (offs[mid]! < pos) lo = mid + 1;
    else hi = mid;
  }
  for (; lo < offs.length && offs[lo] === pos; lo++) if (valid[lo]) return lo;
  return -1;
}

/** Left context for a token's piece (tokens): enough for SentencePiece's leading space. */
const PIECE_CONTEXT = 4;

/**
 * Each token's text as it reads in place: detokenize(context + token) minus
 * detokenize(context), with a few tokens of left context. A token detokenized alone reads
 * wrong in SentencePiece vocabularies (the detokenizer drops the space a token starts with
 * when it is the first), so piece-by-piece detokenizing loses every space between words.
 * Byte tokens of one multi-byte character: the character on the first of them, '' on the
 * others (`cont[k]` = 1: token k continues a character). Two short detokenizations a token:
 * linear in the record's length. The pieces join to detokenize(tokens).
 */
export function tokenPieces(
  vocab: Pick<Vocab, 'detokenize'>,
  tokens: readonly number[],
): { pieces: string[]; cont: Uint8Array } {
  const pieces = new Array<string>(tokens.length).fill('');
  const cont = new Uint8Array(tokens.length);
  const after = (ctx: readonly number[], before: string, span: readonly number[]): string => {
    if (ctx.length === 0) return vocab.detokenize(span);
    const text = vocab.detokenize([...ctx, ...span]);
    return text.startsWith(before) ? text.slice(before.length) : vocab.detokenize(span);
  };
  for (let i = 0; i < tokens.length;) {
    const ctx = tokens.slice(Math.max(0, i - PIECE_CONTEXT), i);
    const before = ctx.length ? vocab.detokenize(ctx) : '';
    let len = 1;
    let piece = after(ctx, before, tokens.slice(i, i + 1));
    // Byte tokens of a multi-byte character: decode up to 4 of them together.
    for (let l = 2; piece.includes('\uFFFD') && l <= 4 && i + l <= tokens.length; l++) {
      const joined = after(ctx, before, tokens.slice(i, i + l));
      if (joined.includes('\uFFFD')) continue;
      piece = joined;
      len = l;
    }
    pieces[i] = piece;
    for (let k = i + 1; k < i + len; k++) cont[k] = 1;
    i += len;
  }
  return { pieces, cont };
}

/**
 * The pieces (tokenPieces) mapped onto the rendered text they were tokenized from, or null
 * when they do not spell it exactly. What the tokenizer adds is taken out: a BOS we added
 * ourselves (the template did not write it) spans no characters, and with `spacePrefix`
 * (SentencePiece) the space it writes before the text that follows a special token. What it
 * drops is put back: whitespace next to a special token that the tokenizer strips (llama.cpp's
 * rstrip/lstrip attributes, e.g. Phi-3) is spelled by that special token.
 */
export function spellRendered(
  vocab: Vocab,
  tokens: readonly number[],
  rendered: string,
  pieces: readonly string[] = tokenPieces(vocab, tokens).pieces,
): string[] | null {
  const out = new Array<string>(tokens.length);
  let pos = 0;
  for (let i = 0; i < tokens.length; i++) {
    let p = pieces[i]!;
    if (i === 0 && tokens[0] === vocab.bos && !rendered.startsWith(p)) p = '';
    else if (vocab.spacePrefix && i > 0 && p.startsWith(' ') && vocab.isSpecial(tokens[i - 1]!))
      p = p.slice(1);
    if (!rendered.startsWith(p, pos)) {
      // Whitespace the tokenizer drops next to a special token (llama.cpp's rstrip/lstrip
      // token attributes: Phi-3's `<|end|>\n`) goes with the special token.
      const ws = /^\s+/.exec(rendered.slice(pos, pos + 64))?.[0] ?? '';
      if (!ws || !rendered.startsWith(p, pos + ws.length)) return null;
      if (vocab.isSpecial(tokens[i]!)) p = ws + p;
      else if (i > 0 && vocab.isSpecial(tokens[i - 1]!)) {
        out[i - 1] += ws;
        pos += ws.length;
      } else return null;
    }
    out[i] = p;
    pos += p.length;
  }
  return pos === rendered.length ? out : null;
}

export class RecordEncoder {
  private readonly renderer: ChatRenderer | null;
  constructor(
    readonly vocab: Vocab,
    readonly mode: MaskMode = 'assistant',
    chatTemplate: string | null = vocab.chatTemplate,
    /** Always tokenize the rendered prefixes (the reference path; tests compare both). */
    readonly exact = false,
  ) {
    this.renderer = chatTemplate
      ? new ChatRenderer(chatTemplate, vocab.bosText, vocab.eosText)
      : null;
  }

  get hasTemplate(): boolean {
    return this.renderer !== null;
  }

  private tok(text: string, special: boolean): number[] {
    const t = this.vocab.tokenize(text, special);
    if (this.vocab.addBos && this.vocab.bos !== null && t[0] !== this.vocab.bos)
      t.unshift(this.vocab.bos);
    return t;
  }

  /**
   * Character offset of every token boundary of the full rendering, when the token pieces
   * spell the rendered text (see spellRendered); null otherwise (then every prefix is
   * tokenized instead).
   */
  private boundaries(tokens: number[], rendered: string): Boundaries | null {
    const { pieces, cont } = tokenPieces(this.vocab, tokens);
    const spelled = spellRendered(this.vocab, tokens, rendered, pieces);
    if (!spelled) return null;
    const offs = new Int32Array(tokens.length + 1);
    const valid = new Uint8Array(tokens.length + 1).fill(1);
    for (let i = 0; i < tokens.length; i++) {
      offs[i + 1] = offs[i]! + spelled[i]!.length;
      // The boundaries inside one multi-byte character (byte tokens) are not boundaries.
      if (cont[i]) valid[i] = 0;
    }
    return { offs, valid };
  }

  /** Token span [start, end) of assistant turn i, by tokenizing the rendered prefixes. */
  private spanByTokens(
    msgs: readonly Message[],
    i: number,
    tokens: number[],
  ): { start: number; end: number; unstable: boolean } {
    const r = this.renderer!;
    const before = this.tok(r.render(msgs.slice(0, i), true), true);
    const throughMsgs = msgs.slice(0, i + 1);
    const through = i === msgs.length - 1 ? tokens : this.tok(r.render(throughMsgs, false), true);
    let start = commonPrefix(before, tokens);
    let unstable = false;
    if (start !== before.length) {
      // The template renders earlier turns differently when they are last (Mistral Nemo moves
      // the system prompt into the last user turn). Fall back to a differential render: the
      // same turns with this reply emptied; the reply starts where their tokens part.
      unstable = true;
      const emptied = throughMsgs.map((m, k) => (k === i ? { role: m.role, content: '' } : m));
      const without = this.tok(r.render(emptied, false), true);
      start = Math.min(commonPrefix(without, through), commonPrefix(through, tokens));
    }
    // (`through` may end in a suffix the template adds only at the very end, e.g. Phi-3's
    // EOS: the common prefix with the full tokens leaves it out, which is the point.)
    return { start, end: commonPrefix(through, tokens), unstable };
  }

  /**
   * The same span from the rendered prefixes' lengths, mapped onto the full tokens' boundaries
   * (no second tokenization). Only when the generation-prompt prefix is a prefix of the full
   * rendering and ends exactly on a token boundary; otherwise null (use spanByTokens).
   */
  private spanByBoundaries(
    msgs: readonly Message[],
    i: number,
    rendered: string,
    { offs, valid }: Boundaries,
  ): { start: number; end: number } | null {
    const r = this.renderer!;
    const before = r.render(msgs.slice(0, i), true);
    if (!rendered.startsWith(before)) return null;
    const start = boundaryIndex(offs, valid, before.length);
    if (start < 0) return null;
    const through = i === msgs.length - 1 ? rendered : r.render(msgs.slice(0, i + 1), false);
    let c = 0;
    const n = Math.min(through.length, rendered.length);
    while (c < n && through.charCodeAt(c) === rendered.charCodeAt(c)) c++;
    // The last token boundary within the common text: tokens past it differ or straddle it.
    let end = start;
    while (end < offs.length - 1 && offs[end + 1]! <= c) end++;
    while (end > start && !valid[end]) end--;
    return { start, end };
  }

  /**
   * The tokens a chat model continues to answer `messages`: the conversation rendered with the
   * generation prompt by the same template and tokenizer as the masks (probe prompts).
   */
  promptTokens(messages: readonly Message[]): number[] {
    if (!this.renderer) {
      throw new TemplateError(
        'the model has no chat template (tokenizer.chat_template), so a chat prompt cannot be rendered',
      );
    }
    return this.tok(this.renderer.render(messages, true), true);
  }

  /**
   * Each token's text for the preview. Where the pieces spell the rendered text they join to
   * exactly it, plus the tokens we add that the text does not contain: our own BOS and a text
   * record's EOS, shown as themselves. Otherwise (a tokenizer that normalises the text, e.g.
   * WordPiece's lower-casing) each token's own text in place (tokenPieces).
   */
  pieces(e: EncodedRecord): string[] {
    const { pieces } = tokenPieces(this.vocab, e.tokens);
    const n = e.tokens.length;
    let spelled = spellRendered(this.vocab, e.tokens, e.rendered, pieces);
    if (!spelled && n > 0 && e.tokens[n - 1] === this.vocab.eos) {
      spelled = spellRendered(this.vocab, e.tokens.slice(0, -1), e.rendered, pieces);
      spelled?.push(pieces[n - 1]!);
    }
    if (!spelled) return pieces;
    if (n > 0 && spelled[0] === '' && e.tokens[0] === this.vocab.bos) spelled[0] = pieces[0]!;
    return spelled;
  }

  encode(record: NormalizedRecord): EncodedRecord {
    if ('text' in record) {
      const tokens = this.tok(record.text, false);
      if (this.vocab.eos !== null) tokens.push(this.vocab.eos);
      return {
        tokens,
        mask: new Uint8Array(tokens.length).fill(1),
        trained: tokens.length,
        unstableBoundaries: 0,
        rendered: record.text,
      };
    }
    if (!this.renderer) {
      throw new TemplateError(
        'the model has no chat template (tokenizer.chat_template), so chat records cannot be rendered',
      );
    }
    const msgs = record.messages;
    const rendered = this.renderer.render(msgs, false);
    const tokens = this.tok(rendered, true);
    const mask = new Uint8Array(tokens.length);
    if (this.mode === 'all') {
      mask.fill(1);
      return { tokens, mask, trained: tokens.length, unstableBoundaries: 0, rendered };
    }
    let assistantTurns = msgs.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
    if (this.mode === 'last') assistantTurns = assistantTurns.slice(-1);
    const offs = this.exact ? null : this.boundaries(tokens, rendered);
    let unstable = 0;
    for (const i of assistantTurns) {
      let span: { start: number; end: number; unstable?: boolean } | null = offs
        ? this.spanByBoundaries(msgs, i, rendered, offs)
        : null;
      span ??= this.spanByTokens(msgs, i, tokens);
      if (span.unstable) unstable++;
      for (let t = span.start; t < span.end; t++) {
        mask[t] = 1;
        if (this.vocab.isEog(tokens[t]!)) break; // the end-of-turn token is trained, what follows it is not
      }
    }
    let trained = 0;
    for (const m of mask) trained += m;
    return { tokens, mask, trained, unstableBoundaries: unstable, rendered };
  }
}
