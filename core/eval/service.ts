/**
 * The eval domain: batch answers of two variants over a prompt set (progress, cancel, resume;
 * stored per run), the blind A/B vote, reference scores, and perplexity with the forgetting
 * check. Answers come from the compare domain's chat model (one loaded model, one context per
 * variant, prompts rendered by the dataset encoder), so evaluation and chat share one budget.
 */
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  OvernightError,
  type EvalItem,
  type EvalSet,
  type Perplexity,
  type Run,
  type Sampling,
  type Variant,
  type VoteChoice,
  type evalMethods,
} from '../../contract/index.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import type { ChatColumn, ChatModel } from '../compare/chat.ts';
import type { CompareService } from '../compare/service.ts';
import type { NormalizedRecord } from '../datasets/types.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import { readPromptFile, validationPrompts, type PromptItem } from './prompts.ts';
import { contains, exactMatch, leftVariant, winRate } from './stats.ts';
import { EvalStore, type EvalSettings, type StoredItem, type StoredSet } from './store.ts';

export type EvalMethod = keyof typeof evalMethods;

/** The general-text sample for the forgetting check (written for the project; shipped). */
export const GENERAL_TEXT = fileURLToPath(
  new URL('../../resources/eval/general.txt', import.meta.url),
);
/** Tokens per scored chunk of the general text. */
const GENERAL_CHUNK = 256;

export interface EvalDeps {
  store: EvalStore;
  events: EventBus;
  compare: CompareService;
  runs: { get(id: string): Run | null };
  validationRecords(datasetId: string, share: number, seed: number): Promise<NormalizedRecord[]>;
}

export class EvalService {
  private readonly jobs = new Map<string, { ctrl: AbortController; done: Promise<void> }>();

  constructor(private readonly d: EvalDeps) {
    d.store.pauseInterrupted();
  }

  private requireRun(id: string): Run {
    const r = this.d.runs.get(id);
    if (!r) throw new OvernightError('NOT_FOUND', `no run with id "${id}"`);
    return r;
  }

  async create(p: {
    runId: string;
    prompts?: string | undefined;
    variants?: [Variant, Variant] | undefined;
    sampling: Sampling;
    orderSeed?: number | undefined;
    device: 'auto' | 'gpu' | 'cpu';
    limit: number;
  }): Promise<EvalSet> {
    const run = this.requireRun(p.runId);
    let variants: [Variant, Variant];
    if (p.variants) variants = p.variants;
    else {
      if (!run.adapterPath)
        throw new OvernightError(
          'INVALID_INPUT',
          `run "${run.name}" has no final adapter yet (it is ${run.state}): pick two variants`,
        );
      variants = [{ kind: 'base' }, { kind: 'run', runId: run.id, scale: 1 }];
    }
    for (const v of variants) this.d.compare.checkVariant(run.modelId, v);
    let items: PromptItem[];
    if (p.prompts) items = await readPromptFile(p.prompts, p.limit);
    else {
      const share = run.config.validationShare;
      const records =
        share > 0 ? await this.d.validationRecords(run.datasetId, share, run.config.seed) : [];
      items = validationPrompts(records, p.limit);
      if (items.length === 0)
        throw new OvernightError(
          'INVALID_INPUT',
          `run "${run.name}" has no validation conversations to ask: give a prompt file (.jsonl or .csv)`,
        );
    }
    const settings: EvalSettings = {
      modelId: run.modelId,
      source: p.prompts ? 'file' : 'validation',
      file: p.prompts ?? null,
      variants,
      labels: [this.d.compare.label(variants[0]), this.d.compare.label(variants[1])],
      sampling: p.sampling,
      orderSeed: p.orderSeed ?? randomInt(0, 2 ** 31 - 1),
      device: p.device,
    };
    const id = this.d.store.create(run.id, settings, items);
    this.start(id);
    return this.summary(id);
  }

  list(runId?: string): EvalSet[] {
    return this.d.store.list(runId).map((s) => this.toSet(s, this.d.store.items(s.id)));
  }

  summary(id: string): EvalSet {
    return this.toSet(this.d.store.require(id), this.d.store.items(id));
  }

  show(id: string): { set: EvalSet; items: EvalItem[] } {
    const s = this.d.store.require(id);
    const items = this.d.store.items(id);
    return {
      set: this.toSet(s, items),
      items: items.map((it) => {
        const left = leftVariant(s.settings.orderSeed, it.index);
        const lastUser = it.messages.findLast((m) => m.role === 'user');
        return {
          index: it.index,
          prompt: lastUser?.content ?? '',
          reference: it.reference,
          left: it.answers[left],
          right: it.answers[left === 0 ? 1 : 0],
          vote: it.vote,
          leftVariant: s.revealed ? left : null,
        };
      }),
    };
  }

  private toSet(s: StoredSet, items: StoredItem[]): EvalSet {
    const answered = items.filter((i) => i.answers[0] !== null && i.answers[1] !== null);
    const votes = items.flatMap((i) =>
      i.vote ? [{ vote: i.vote, left: leftVariant(s.settings.orderSeed, i.index) }] : [],
    );
    const withRef = answered.filter((i) => i.reference !== null);
    const share = (f: (a: string, r: string) => boolean, v: 0 | 1) =>
      withRef.filter((i) => f(i.answers[v]!, i.reference!)).length / withRef.length;
    return {
      id: s.id,
      runId: s.runId,
      modelId: s.settings.modelId,
      source: s.settings.source,
      file: s.settings.file,
      variants: s.settings.variants,
      labels: s.settings.labels,
      sampling: s.settings.sampling,
      orderSeed: s.settings.orderSeed,
      state: s.state,
      error: s.error,
      total: items.length,
      answered: answered.length,
      voted: votes.length,
      revealed: s.revealed,
      winRate: winRate(votes),
      references:
        withRef.length === 0
          ? null
          : {
              items: withRef.length,
              exact: [share(exactMatch, 0), share(exactMatch, 1)],
              contains: [share(contains, 0), share(contains, 1)],
            },
      perplexity: s.perplexity,
      general: s.general,
      createdAt: s.createdAt,
    };
  }

  private progress(id: string): void {
    this.d.events.emit('eval.progress', this.summary(id));
  }

  // --- answering -----------------------------------------------------------------------------

  private start(id: string): void {
    const ctrl = new AbortController();
    this.d.store.setState(id, 'answering');
    const done = this.d.compare
      .track(this.answerAll(id, ctrl.signal))
      .then(
        () => this.d.store.setState(id, ctrl.signal.aborted ? 'paused' : 'completed'),
        (e: unknown) => this.d.store.setState(id, 'failed', (e as Error).message),
      )
      .finally(() => {
        this.jobs.delete(id);
        this.progress(id);
      });
    this.jobs.set(id, { ctrl, done });
  }

  private async columns(
    s: StoredSet,
    columns: number,
    scoring = false,
  ): Promise<[ChatModel, ChatColumn[]]> {
    const chat = await this.d.compare.chatFor(s.settings.modelId, s.settings.device, columns);
    const cols = await Promise.all(
      s.settings.variants.map(async (v) =>
        chat.column(await this.d.compare.adapter(v), { scoring }),
      ),
    );
    return [chat, cols];
  }

  private async answerAll(id: string, signal: AbortSignal): Promise<void> {
    const s = this.d.store.require(id);
    const [, cols] = await this.columns(s, 2);
    for (const item of this.d.store.items(id)) {
      if (signal.aborted) return;
      await Promise.all(
        ([0, 1] as const).map(async (v) => {
          if (item.answers[v] !== null) return;
          const r = await cols[v]!.generate(item.messages, s.settings.sampling, { signal });
          if (r.finish !== 'stopped') this.d.store.setAnswer(id, item.index, v, r.text);
        }),
      );
      this.progress(id);
    }
  }

  resume(id: string): EvalSet {
    const s = this.d.store.require(id);
    if (!this.jobs.has(id) && s.state !== 'completed') this.start(id);
    return this.summary(id);
  }

  async cancel(id: string): Promise<EvalSet> {
    this.d.store.require(id);
    const j = this.jobs.get(id);
    if (j) {
      j.ctrl.abort();
      await j.done;
    }
    return this.summary(id);
  }

  /** Waits for every answering job (tests, shutdown). */
  async idle(): Promise<void> {
    await Promise.all([...this.jobs.values()].map((j) => j.done));
  }

  // --- votes -----------------------------------------------------------------------------------

  vote(id: string, index: number, vote: VoteChoice): EvalSet {
    const s = this.d.store.require(id);
    const item = this.d.store.items(id).find((i) => i.index === index);
    if (!item) throw new OvernightError('NOT_FOUND', `the evaluation has no item ${index}`);
    if (item.answers[0] === null || item.answers[1] === null)
      throw new OvernightError('CONFLICT', `item ${index} is not answered yet`);
    this.d.store.vote(s.id, index, vote);
    const set = this.summary(id);
    this.d.events.emit('eval.progress', set);
    return set;
  }

  reveal(id: string): EvalSet {
    this.d.store.require(id);
    this.d.store.reveal(id);
    const set = this.summary(id);
    this.d.events.emit('eval.progress', set);
    return set;
  }

  // --- perplexity ------------------------------------------------------------------------------

  /**
   * Each variant's loss (mean -ln p per scored token) and perplexity on the run's validation
   * windows (the trainer's own input file: same tokens, labels and segments as its evaluation)
   * and on the general-text sample (BOS + text, every next token scored, in chunks).
   */
  async perplexity(id: string): Promise<EvalSet> {
    const s = this.d.store.require(id);
    const run = this.requireRun(s.runId);
    const work = (async () => {
      const [chat, cols] = await this.columns(s, 2, true);
      const valFile = join(run.folder, 'validation.tokens');
      const val = existsSync(valFile)
        ? await scoreSamples(cols, windowSamples(valFile, chat.contextSize))
        : null;
      const general = await scoreSamples(cols, generalSamples(chat));
      // General ability: how much likelier B finds the general text than A (ppl_A / ppl_B - 1),
      // negative when the tuning cost general ability: -50% = the tuned perplexity doubled.
      const change = general.perplexity[0] / general.perplexity[1] - 1;
      this.d.store.setPerplexity(id, val, { ...general, change });
    })();
    await this.d.compare.track(work);
    const set = this.summary(id);
    this.d.events.emit('eval.progress', set);
    return set;
  }

  async delete(id: string): Promise<boolean> {
    if (this.jobs.has(id)) await this.cancel(id);
    return this.d.store.delete(id);
  }

  async close(): Promise<void> {
    for (const id of [...this.jobs.keys()]) await this.cancel(id);
  }
}

interface Sample {
  tokens: number[];
  labels: number[];
}

/** The samples of a token data file: each segment of each window (positions restart there). */
export function windowSamples(path: string, maxTokens: number): Sample[] {
  const r = new TokenDataReader(path);
  const out: Sample[] = [];
  try {
    for (let w = 0; w < r.nWindows; w++) {
      const win = r.read(w);
      const seg = win.segments;
      let start = 0;
      for (let t = 1; t <= win.tokens.length; t++) {
        if (t < win.tokens.length && (!seg || seg[t] === seg[start])) continue;
        if (!seg || seg[start]! >= 0) {
          const labels = Array.from(win.labels.subarray(start, t));
          if (labels.some((l) => l >= 0)) {
            if (t - start > maxTokens)
              throw new OvernightError(
                'UNSUPPORTED',
                `a validation sample of ${t - start} tokens is longer than the chat context (${maxTokens})`,
              );
            out.push({ tokens: Array.from(win.tokens.subarray(start, t)), labels });
          }
        }
        start = t;
      }
    }
  } finally {
    r.close();
  }
  return out;
}

function generalSamples(chat: ChatModel): Sample[] {
  const text = readFileSync(GENERAL_TEXT, 'utf8');
  const v = chat.vocab;
  const all = v.tokenize(text, false);
  const out: Sample[] = [];
  const chunk = Math.min(GENERAL_CHUNK, chat.contextSize - 1);
  for (let i = 0; i < all.length; i += chunk) {
    const body = all.slice(i, i + chunk);
    const tokens = v.bos !== null && v.addBos ? [v.bos, ...body] : body;
    // labels[t]: the token after tokens[t]; the last one has none in this chunk.
    const labels = tokens.map((_, t) => (t + 1 < tokens.length ? tokens[t + 1]! : -1));
    out.push({ tokens, labels });
  }
  return out;
}

async function scoreSamples(cols: ChatColumn[], samples: Sample[]): Promise<Perplexity> {
  const loss: number[] = [];
  let tokens = 0;
  for (const c of cols) {
    let nll = 0;
    let n = 0;
    for (const s of samples) {
      const r = await c.logLikelihood(s.tokens, s.labels);
      nll += r.nll;
      n += r.count;
    }
    loss.push(n > 0 ? nll / n : 0);
    tokens = n;
  }
  return {
    loss: [loss[0]!, loss[1]!],
    perplexity: [Math.exp(loss[0]!), Math.exp(loss[1]!)],
    tokens,
  };
}

export function evalHandlers(s: EvalService): Handlers<EvalMethod> {
  return {
    'eval.create': (p) => s.create(p),
    'eval.list': ({ runId }) => s.list(runId),
    'eval.show': ({ id }) => s.show(id),
    'eval.resume': ({ id }) => s.resume(id),
    'eval.cancel': ({ id }) => s.cancel(id),
    'eval.vote': ({ id, index, vote }) => s.vote(id, index, vote),
    'eval.reveal': ({ id }) => s.reveal(id),
    'eval.perplexity': ({ id }) => s.perplexity(id),
    'eval.delete': async ({ id }) => ({ deleted: await s.delete(id) }),
  };
}
