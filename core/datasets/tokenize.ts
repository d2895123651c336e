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

export class RecordEncoder {
  private readonly renderer: ChatRenderer | null;
  constructor(
    readonly vocab: Vocab,
    readonly mode: MaskMode = 'assistant',
    chatTemplate: string | null = vocab.chatTemplate,
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
    let unstable = 0;
    for (const i of assistantTurns) {
      const before = this.tok(this.renderer.render(msgs.slice(0, i), true), true);
      const throughMsgs = msgs.slice(0, i + 1);
      const through =
        i === msgs.length - 1 ? tokens : this.tok(this.renderer.render(throughMsgs, false), true);
      let start = commonPrefix(before, tokens);
      if (start !== before.length) {
        // The template renders earlier turns differently when they are last (Mistral Nemo moves
        // the system prompt into the last user turn). Fall back to a differential render: the
        // same turns with this reply emptied; the reply starts where their tokens part.
        unstable++;
        const emptied = throughMsgs.map((m, k) => (k === i ? { role: m.role, content: '' } : m));
        const without = this.tok(this.renderer.render(emptied, false), true);
        start = Math.min(commonPrefix(without, through), commonPrefix(through, tokens));
      }
      // (`through` may end in a suffix the template adds only at the very end, e.g. Phi-3's
      // EOS: the common prefix with the full tokens leaves it out, which is the point.)
      const end = commonPrefix(through, tokens);
      for (let t = start; t < end; t++) {
        mask[t] = 1;
        if (this.vocab.isEog(tokens[t]!)) break; // the end-of-turn token is trained, what follows it is not
      }
    }
    let trained = 0;
    for (const m of mask) trained += m;
    return { tokens, mask, trained, unstableBoundaries: unstable, rendered };
  }
}
