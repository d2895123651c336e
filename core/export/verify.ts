/**
 * The greedy check every adapter export runs: the base model loaded in node-llama-cpp (the
 * app's inference runtime, the same llama.cpp adapter loader as llama-cli and Ollama's runner)
 * with the run's own adapter, and again with the exported file, answers the run's probe prompts
 * greedily; the two answers must be the same tokens. The base alone is asked too and shown, so
 * the result says whether the adapter changes anything on these prompts.
 */
import type { Llama, LlamaModel, Token } from 'node-llama-cpp';
import type { ExportCheck } from '../../contract/index.ts';

export interface ProbePromptTokens {
  tokens: number[];
  label: string;
}

/** Tokens generated per probe, as the trainer's own probes (runs.md "Probe samples"). */
export const PROBE_TOKENS = 48;

export class ProbeSet {
  private model: Promise<LlamaModel> | null = null;
  private prompts: Promise<ProbePromptTokens[]> | null = null;
  private readonly answers = new Map<string, Promise<number[][]>>();

  constructor(
    private readonly o: {
      llama: () => Promise<Llama>;
      modelPath: string;
      /** The prompts rendered and tokenized as the run asks them (null: none could be made). */
      prompts: () => Promise<ProbePromptTokens[]>;
      threads?: number;
    },
  ) {}

  private loadModel(): Promise<LlamaModel> {
    this.model ??= this.o
      .llama()
      .then((llama) => llama.loadModel({ modelPath: this.o.modelPath, gpuLayers: 0 }));
    return this.model;
  }

  list(): Promise<ProbePromptTokens[]> {
    this.prompts ??= this.o.prompts();
    return this.prompts;
  }

  /** Greedy answers (token ids) of each probe with `adapter` (null: the base alone). */
  answersWith(adapter: string | null): Promise<number[][]> {
    const key = adapter ?? '\0base';
    let p = this.answers.get(key);
    if (!p) {
      p = this.generate(adapter);
      this.answers.set(key, p);
    }
    return p;
  }

  private async generate(adapter: string | null): Promise<number[][]> {
    return this.answersFrom(await this.loadModel(), adapter);
  }

  /** The base model, loaded once (disposed with the set). */
  base(): Promise<LlamaModel> {
    return this.loadModel();
  }

  /** Another model file (e.g. a merged model) loaded like the base; the caller disposes it. */
  async loadOther(modelPath: string): Promise<LlamaModel> {
    return (await this.o.llama()).loadModel({ modelPath, gpuLayers: 0 });
  }

  /** Greedy answers (token ids) of each probe from `model` with `adapter` (null: none). */
  async answersFrom(model: LlamaModel, adapter: string | null): Promise<number[][]> {
    const prompts = await this.list();
    const longest = Math.max(1, ...prompts.map((p) => p.tokens.length));
    const ctx = await model.createContext({
      contextSize: Math.min(model.trainContextSize, longest + PROBE_TOKENS + 8),
      threads: this.o.threads ?? 1,
      ...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
    });
    try {
      const out: number[][] = [];
      const seq = ctx.getSequence();
      for (const p of prompts) {
        await seq.clearHistory();
        const got: number[] = [];
        for await (const t of seq.evaluate(p.tokens as Token[], { temperature: 0 })) {
          if (model.isEogToken(t)) break;
          got.push(Number(t));
          if (got.length >= PROBE_TOKENS) break;
        }
        out.push(got);
      }
      return out;
    } finally {
      await ctx.dispose();
    }
  }

  /** The answer's text, cut to 80 characters (the check's detail shows it). */
  async text(tokens: number[]): Promise<string> {
    const s = (await this.loadModel()).detokenize(tokens as Token[]);
    return s.length > 80 ? `${s.slice(0, 80)}…` : s;
  }

  /** The check: the exported adapter answers every probe exactly as the run's own adapter. */
  async sameGreedy(source: string, exported: string, what: string): Promise<ExportCheck> {
    const prompts = await this.list();
    const [want, got, base] = await Promise.all([
      this.answersWith(source),
      this.answersWith(exported),
      this.answersWith(null),
    ]);
    const lines: string[] = [];
    let ok = prompts.length > 0;
    let changed = 0;
    for (let i = 0; i < prompts.length; i++) {
      const a = want[i] ?? [];
      const b = got[i] ?? [];
      const same = a.length === b.length && a.every((t, j) => t === b[j]);
      if (!same) ok = false;
      const baseSame = (base[i] ?? []).join(',') === a.join(',');
      if (!baseSame) changed++;
      lines.push(
        `"${prompts[i]!.label}": ${same ? 'same' : 'DIFFERENT'}: run's adapter ${JSON.stringify(await this.text(a))}` +
          (same ? '' : `, export ${JSON.stringify(await this.text(b))}`) +
          `, base alone ${baseSame ? 'the same' : JSON.stringify(await this.text(base[i] ?? []))}`,
      );
    }
    return {
      name: `${what} loads in node-llama-cpp and answers the ${prompts.length} probe prompt(s) greedily as the run's own adapter`,
      ok,
      detail:
        (prompts.length === 0 ? 'no probe prompt could be asked; ' : '') +
        `${changed}/${prompts.length} answers differ from the base alone. ` +
        lines.join('; '),
    };
  }

  async dispose(): Promise<void> {
    const m = await this.model?.catch(() => null);
    this.model = null;
    await m?.dispose();
  }
}
