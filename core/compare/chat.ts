/**
 * The chat engine behind Compare: one loaded model (the base weights, once) and one context
 * per column, each with its own adapter through node-llama-cpp's per-context LoRA. Prompts are
 * never formatted by a node-llama-cpp chat wrapper: the conversation is rendered by the dataset
 * encoder (RecordEncoder.promptTokens: the GGUF's Jinja template, the same code the training
 * masks come from) up to the generation prompt, and those tokens are evaluated with the
 * low-level sequence API until an end-of-generation token or the token limit.
 *
 * A column keeps its KV cache between turns: the new prompt's common prefix with what the
 * context holds is reused, the rest is erased and evaluated.
 */
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import type { Sampling } from '../../contract/index.ts';
import { RecordEncoder, type Vocab } from '../datasets/tokenize.ts';
import type { Message } from '../datasets/types.ts';
import { modelVocab } from '../datasets/vocab.ts';

export interface AdapterRef {
  filePath: string;
  /** 1 = as trained. */
  scale: number;
}

export interface ChatModelOptions {
  modelPath: string;
  /** Offload layers to the GPU (when node-llama-cpp has one); false keeps everything in RAM. */
  gpu: boolean;
  /** Context length of every column; default min(the model's training context, 4096). */
  contextSize?: number;
  threads?: number;
}

export type FinishReason = 'end' | 'max-tokens' | 'stopped';

export interface GenerateResult {
  text: string;
  tokens: number[];
  tokensPerSecond: number;
  finish: FinishReason;
}

export interface GenerateOptions {
  signal?: AbortSignal;
  /** Called with the text added since the last call (whole characters only). */
  onText?: (delta: string, tokens: number, tokensPerSecond: number) => void;
}

export const MAX_CHAT_CONTEXT = 4096;

export class ChatModel {
  private readonly columns = new Map<string, Promise<ChatColumn>>();
  readonly encoder: RecordEncoder;
  readonly vocab: Vocab;

  private constructor(
    readonly model: LlamaModel,
    readonly contextSize: number,
    private readonly threads: number | undefined,
  ) {
    this.vocab = modelVocab(model);
    this.encoder = new RecordEncoder(this.vocab, 'assistant');
  }

  static async load(llama: Llama, o: ChatModelOptions): Promise<ChatModel> {
    const model = await llama.loadModel({ modelPath: o.modelPath, gpuLayers: o.gpu ? 'auto' : 0 });
    const contextSize = o.contextSize ?? Math.min(model.trainContextSize, MAX_CHAT_CONTEXT);
    return new ChatModel(model, contextSize, o.threads);
  }

  /**
   * The context for one adapter (null: the base), created on first use and kept. `scoring`:
   * a separate context for log-likelihoods (F32 K/V cache).
   */
  column(adapter: AdapterRef | null, { scoring = false } = {}): Promise<ChatColumn> {
    const key = `${adapter ? `${adapter.filePath}\0${adapter.scale}` : 'base'}${scoring ? '\0scoring' : ''}`;
    let c = this.columns.get(key);
    if (!c) {
      c = (async () => {
        const ctx = await this.model.createContext({
          contextSize: this.contextSize,
          // Scoring (perplexity) keeps K/V in F32 like the trainer's evaluation does, so the
          // two agree to ~1e-3; chat uses the default F16 cache.
          ...(scoring
            ? { experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' }
            : {}),
          ...(this.threads !== undefined ? { threads: this.threads } : {}),
          ...(adapter
            ? { lora: { adapters: [{ filePath: adapter.filePath, scale: adapter.scale }] } }
            : {}),
        });
        return new ChatColumn(this, ctx);
      })();
      this.columns.set(key, c);
      c.catch(() => this.columns.delete(key));
    }
    return c;
  }

  async dispose(): Promise<void> {
    for (const c of this.columns.values()) await (await c.catch(() => null))?.dispose();
    this.columns.clear();
    await this.model.dispose();
  }
}

export class ChatColumn {
  private readonly sequence: LlamaContextSequence;
  /** The prompt tokens of the last answer, read back from the context (what was evaluated). */
  evaluatedPrompt: number[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly chat: ChatModel,
    private readonly context: LlamaContext,
  ) {
    this.sequence = context.getSequence();
  }

  /** The tokens an answer to `messages` continues: the dataset encoder's rendering. */
  promptTokens(messages: readonly Message[]): number[] {
    return this.chat.encoder.promptTokens(messages);
  }

  /** Answers `messages`; calls on one column run one after another (a chat and an evaluation). */
  generate(
    messages: readonly Message[],
    sampling: Sampling,
    opts: GenerateOptions = {},
  ): Promise<GenerateResult> {
    return this.serial(() => this.run(messages, sampling, opts));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
    this.queue = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  /**
   * Negative log-likelihood of the labelled tokens of one sample: `tokens` are read in order
   * from an empty context; `labels[t]` (>= 0) is the token that must follow tokens[0..t] (the
   * trainer's shifted labels), -1 where nothing is scored. Natural log, summed.
   */
  logLikelihood(tokens: readonly number[], labels: readonly number[]): Promise<LogLikelihood> {
    return this.serial(async () => {
      const seq = this.sequence;
      if (tokens.length > this.chat.contextSize)
        throw new ContextFullError(
          `a sample of ${tokens.length} tokens is longer than the chat context (${this.chat.contextSize})`,
        );
      if (seq.nextTokenIndex > 0) await seq.clearHistory();
      const full = { temperature: 1, topK: 0, topP: 1, minP: 0 };
      const input = tokens.map((t, i) =>
        labels[i]! >= 0
          ? ([t as Token, { generateNext: { probabilities: true, options: full } }] as const)
          : (t as Token),
      );
      const out = await seq.controlledEvaluate(
        input as Parameters<typeof seq.controlledEvaluate>[0],
      );
      let nll = 0;
      let count = 0;
      for (let i = 0; i < tokens.length; i++) {
        if (labels[i]! < 0) continue;
        const p = out[i]?.next.probabilities?.get(labels[i] as Token) ?? 0;
        nll -= Math.log(Math.max(p, 1e-30));
        count++;
      }
      await seq.clearHistory();
      return { nll, count };
    });
  }

  private async run(
    messages: readonly Message[],
    s: Sampling,
    { signal, onText }: GenerateOptions,
  ): Promise<GenerateResult> {
    const prompt = this.promptTokens(messages);
    const room = this.chat.contextSize - prompt.length;
    if (room < 1) {
      throw new ContextFullError(
        `the conversation is ${prompt.length} tokens, longer than the chat context (${this.chat.contextSize}): clear it or start a new one`,
      );
    }
    const maxTokens = Math.min(s.maxTokens, room);
    const seq = this.sequence;
    // Reuse the cached prefix; at least the last prompt token is evaluated again (it yields
    // the first answer token).
    const keep = Math.min(
      seq.compareContextTokens(prompt as Token[]).firstDifferentIndex,
      prompt.length - 1,
    );
    if (keep < seq.nextTokenIndex)
      await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    const model = this.chat.model;
    const out: number[] = [];
    let text = '';
    let sent = 0;
    let first = 0;
    let finish: FinishReason = 'end';
    const tps = (): number => {
      if (out.length < 2 || first === 0) return 0;
      const dt = (performance.now() - first) / 1000;
      return dt > 0 ? (out.length - 1) / dt : 0;
    };
    if (signal?.aborted) finish = 'stopped';
    else {
      const gen = seq.evaluate(prompt.slice(keep) as Token[], {
        temperature: s.temperature,
        topK: s.topK,
        topP: s.topP,
        minP: s.minP,
        seed: s.seed,
        ...(s.repeatPenalty > 1
          ? {
              repeatPenalty: {
                punishTokens: () => [...prompt.slice(-64), ...out.slice(-64)] as Token[],
                penalty: s.repeatPenalty,
              },
            }
          : {}),
      });
      for await (const t of gen) {
        if (first === 0) first = performance.now();
        out.push(Number(t));
        if (model.isEogToken(t)) break; // (not yielded by default; kept for safety)
        text = model.detokenize(out as Token[], false);
        // Hold back a partial multi-byte character until its last byte arrives.
        const whole = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
        if (whole.length > sent) {
          onText?.(whole.slice(sent), out.length, tps());
          sent = whole.length;
        }
        if (signal?.aborted) {
          finish = 'stopped';
          break;
        }
        if (out.length >= maxTokens) {
          finish = 'max-tokens';
          break;
        }
      }
      await gen.return();
    }
    this.evaluatedPrompt = seq.contextTokens.slice(0, prompt.length).map(Number);
    if (out.length > 0 && model.isEogToken(out.at(-1) as Token)) out.pop();
    text = model.detokenize(out as Token[], false);
    if (text.length > sent) onText?.(text.slice(sent), out.length, tps());
    return { text, tokens: out, tokensPerSecond: tps(), finish };
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
  }
}

export class ContextFullError extends Error {}

export interface LogLikelihood {
  /** Sum of -ln p over the scored tokens. */
  nll: number;
  count: number;
}
