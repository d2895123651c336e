/**
 * The compare domain: conversations whose columns (base, a run's adapter, a kept checkpoint,
 * an adapter file) answer the same messages with the same sampling and seed. One chat model is
 * loaded at a time (the base weights once; one context per column: chat.ts). Before loading,
 * the memory the chat needs is estimated against the GPU and a training run (memory.ts).
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Llama } from 'node-llama-cpp';
import {
  OvernightError,
  samplingSchema,
  type ChatMemory,
  type CompareAnswer,
  type CompareColumn,
  type Conversation,
  type ModelInfo,
  type Run,
  type RunCheckpoint,
  type RunMetric,
  type Sampling,
  type Variant,
  type VariantOption,
  type compareMethods,
} from '../../contract/index.ts';
import type { Message } from '../datasets/types.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import { readModelDims } from '../runs/model-dims.ts';
import { ChatModel, ContextFullError, MAX_CHAT_CONTEXT, type AdapterRef } from './chat.ts';
import { conversationMarkdown, markdownFileName } from './markdown.ts';
import { chatMemoryBytes, chatMemoryVerdict } from './memory.ts';
import { ConversationStore, type ChatDevice, type StoredConversation } from './store.ts';

export type CompareMethod = keyof typeof compareMethods;

export interface CompareDeps {
  store: ConversationStore;
  events: EventBus;
  models: { require(id: string): ModelInfo };
  runs: {
    get(id: string): Run | null;
    list(): Run[];
    checkpoints(id: string): RunCheckpoint[];
    metrics(id: string, fromStep: number, toStep: number): RunMetric[];
  };
  /** The run training now (it holds the device), or null. */
  trainingRun(): Run | null;
  /** Writes a kept checkpoint's adapter (runs.exportCheckpoint); returns its path. */
  exportCheckpoint(runId: string, step: number): Promise<string>;
  llama(): Promise<Llama>;
  /** The inference runtime's GPU and its free memory now; null without one. */
  gpu(): Promise<{ name: string; freeBytes: number } | null>;
  /** CPU threads per context (tests pin it); default node-llama-cpp's. */
  threads?: number;
}

/** Streamed text is sent at most this often per column. */
const TOKEN_EVENT_MS = 100;

interface Loaded {
  modelId: string;
  gpu: boolean;
  chat: Promise<ChatModel>;
}

interface Active {
  ctrl: AbortController;
  done: Promise<void>;
}

function scaleLabel(v: Variant): string {
  return 'scale' in v && v.scale !== 1 ? ` (x${v.scale})` : '';
}

export class CompareService {
  private loaded: Loaded | null = null;
  private readonly active = new Map<string, Active>();
  private readonly jobs = new Set<Promise<unknown>>();

  constructor(private readonly d: CompareDeps) {}

  // --- variants and memory ---------------------------------------------------------------

  variants(modelId: string): VariantOption[] {
    this.d.models.require(modelId);
    const out: VariantOption[] = [{ variant: { kind: 'base' }, label: 'base', needsExport: false }];
    for (const r of this.d.runs.list()) {
      if (r.modelId !== modelId) continue;
      if (r.adapterPath && existsSync(r.adapterPath)) {
        out.push({
          variant: { kind: 'run', runId: r.id, scale: 1 },
          label: r.name,
          needsExport: false,
        });
      }
      for (const c of this.d.runs.checkpoints(r.id)) {
        if (!existsSync(c.path)) continue;
        out.push({
          variant: { kind: 'checkpoint', runId: r.id, step: c.step, scale: 1 },
          label: `${r.name} @ step ${c.step}`,
          needsExport: !existsSync(this.checkpointAdapter(r, c.step)),
        });
      }
    }
    return out;
  }

  private checkpointAdapter(run: Run, step: number): string {
    return join(run.folder, `adapter-step-${step}.gguf`);
  }

  async memory(modelId: string, columns: number): Promise<ChatMemory> {
    const m = this.d.models.require(modelId);
    const dims = await readModelDims(m.path, m.vocabSize);
    const ctx = Math.min(m.contextLength || MAX_CHAT_CONTEXT, MAX_CHAT_CONTEXT);
    const needBytes = chatMemoryBytes(dims, columns, ctx);
    const run = this.d.trainingRun();
    let training: { name: string; growthBytes: number } | null = null;
    if (run) {
      // The GPU's free memory already leaves out what the run holds now; keep free what it may
      // still grow by: its estimated peak less its last measured use.
      const peak = run.estimate?.memory.totalBytes ?? 0;
      const held = this.d.runs.metrics(run.id, run.step, run.step).at(-1)?.memoryBytes ?? 0;
      training = { name: run.name, growthBytes: Math.max(0, peak - held) };
    }
    const gpu = await this.d.gpu();
    // Already loaded on the GPU: its memory is taken, and counted by the measurement.
    if (gpu && this.loaded?.modelId === modelId && this.loaded.gpu)
      return chatMemoryVerdict({
        needBytes,
        gpu: { ...gpu, freeBytes: gpu.freeBytes + needBytes },
        training,
      });
    return chatMemoryVerdict({ needBytes, gpu, training });
  }

  // --- conversations ---------------------------------------------------------------------

  label(v: Variant): string {
    switch (v.kind) {
      case 'base':
        return 'base';
      case 'run':
        return this.requireRun(v.runId).name + scaleLabel(v);
      case 'checkpoint':
        return `${this.requireRun(v.runId).name} @ step ${v.step}${scaleLabel(v)}`;
      case 'file':
        return basename(v.path) + scaleLabel(v);
    }
  }

  private requireRun(id: string): Run {
    const r = this.d.runs.get(id);
    if (!r) throw new OvernightError('NOT_FOUND', `no run with id "${id}"`);
    return r;
  }

  checkVariant(modelId: string, v: Variant): void {
    if (v.kind === 'run' || v.kind === 'checkpoint') {
      const r = this.requireRun(v.runId);
      if (r.modelId !== modelId) {
        throw new OvernightError(
          'INVALID_INPUT',
          `run "${r.name}" was trained on another model (${r.modelId}), not ${modelId}`,
        );
      }
      if (v.kind === 'run' && !r.adapterPath) {
        throw new OvernightError(
          'INVALID_INPUT',
          `run "${r.name}" has no final adapter yet (it is ${r.state}); pick one of its checkpoints`,
        );
      }
      if (
        v.kind === 'checkpoint' &&
        !this.d.runs.checkpoints(r.id).some((c) => c.step === v.step)
      ) {
        throw new OvernightError(
          'NOT_FOUND',
          `run "${r.name}" has no kept checkpoint at step ${v.step}`,
        );
      }
    } else if (v.kind === 'file' && !existsSync(v.path)) {
      throw new OvernightError('FILE_NOT_FOUND', `the adapter file ${v.path} does not exist`);
    }
  }

  create(p: {
    modelId: string;
    variants: Variant[];
    systemPrompt: string;
    sampling: Sampling;
    device: ChatDevice;
    title?: string | undefined;
  }): Conversation {
    const model = this.d.models.require(p.modelId);
    for (const v of p.variants) this.checkVariant(p.modelId, v);
    const columns: CompareColumn[] = p.variants.map((variant, index) => ({
      index,
      variant,
      label: this.label(variant),
    }));
    const id = this.d.store.create({
      title: p.title ?? `${model.name}: ${columns.map((c) => c.label).join(' vs ')}`,
      modelId: p.modelId,
      columns,
      systemPrompt: p.systemPrompt,
      sampling: p.sampling,
      device: p.device,
    });
    this.changed(id);
    return this.show(id);
  }

  list() {
    return this.d.store.list().map((c) => ({
      id: c.id,
      title: c.title,
      modelId: c.modelId,
      columns: c.columns,
      turns: c.turns,
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
    }));
  }

  show(id: string): Conversation {
    const c = this.d.store.require(id);
    return this.toConversation(c);
  }

  private toConversation(c: StoredConversation): Conversation {
    return {
      id: c.id,
      title: c.title,
      modelId: c.modelId,
      columns: c.columns,
      turns: c.turnList.length,
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
      systemPrompt: c.systemPrompt,
      sampling: c.sampling,
      device: c.device,
      turnList: c.turnList,
      generating: this.active.has(c.id),
    };
  }

  private changed(id: string): void {
    this.d.events.emit('compare.changed', { id });
  }

  update(p: {
    id: string;
    systemPrompt?: string | undefined;
    sampling?: Partial<Sampling> | undefined;
    title?: string | undefined;
    device?: ChatDevice | undefined;
  }): Conversation {
    const cur = this.d.store.require(p.id);
    const sampling = p.sampling
      ? samplingSchema.parse({ ...cur.sampling, ...p.sampling })
      : undefined;
    this.d.store.update(p.id, {
      ...(p.title !== undefined ? { title: p.title } : {}),
      ...(p.systemPrompt !== undefined ? { systemPrompt: p.systemPrompt } : {}),
      ...(sampling ? { sampling } : {}),
      ...(p.device !== undefined ? { device: p.device } : {}),
    });
    this.changed(p.id);
    return this.show(p.id);
  }

  async send(id: string, text: string): Promise<Conversation> {
    const c = this.d.store.require(id);
    if (this.active.has(id))
      throw new OvernightError('CONFLICT', 'the columns are still answering: stop them first');
    await this.prepare(c);
    const turn = this.d.store.addTurn(id, text);
    this.start(id, turn);
    return this.show(id);
  }

  async regenerate(id: string): Promise<Conversation> {
    await this.stop(id);
    const c = this.d.store.require(id);
    const last = c.turnList.at(-1);
    if (!last)
      throw new OvernightError('CONFLICT', 'the conversation has no message to answer again');
    await this.prepare(c);
    this.d.store.clearAnswers(id, last.index);
    this.start(id, last.index);
    return this.show(id);
  }

  async editLast(id: string, text: string): Promise<Conversation> {
    await this.stop(id);
    const c = this.d.store.require(id);
    const last = c.turnList.at(-1);
    if (!last) throw new OvernightError('CONFLICT', 'the conversation has no message to edit');
    await this.prepare(c);
    this.d.store.setUser(id, last.index, text);
    this.d.store.clearAnswers(id, last.index);
    this.start(id, last.index);
    return this.show(id);
  }

  async stop(id: string): Promise<Conversation> {
    const a = this.active.get(id);
    if (a) {
      a.ctrl.abort();
      await a.done;
    }
    return this.show(id);
  }

  async clear(id: string): Promise<Conversation> {
    await this.stop(id);
    this.d.store.clear(id);
    this.changed(id);
    return this.show(id);
  }

  async delete(id: string): Promise<boolean> {
    if (this.active.has(id)) await this.stop(id);
    const deleted = this.d.store.delete(id);
    if (deleted) this.changed(id);
    return deleted;
  }

  markdown(id: string): { markdown: string; fileName: string } {
    const c = this.show(id);
    let name = c.modelId;
    try {
      name = this.d.models.require(c.modelId).name;
    } catch {
      // the model was removed from the library: keep its id
    }
    return { markdown: conversationMarkdown(c, name), fileName: markdownFileName(c.title) };
  }

  // --- the model ---------------------------------------------------------------------------

  /** Loads the conversation's model (unless loaded), after the memory check. */
  private prepare(c: StoredConversation): Promise<ChatModel> {
    return this.chatFor(c.modelId, c.device, c.columns.length);
  }

  /**
   * The chat model for `modelId` on `device`, loaded unless it is (after the memory check for
   * `columns` contexts when the device is auto). Evaluation jobs share it (core/eval).
   */
  async chatFor(modelId: string, device: ChatDevice, columns: number): Promise<ChatModel> {
    const model = this.d.models.require(modelId);
    if (!model.fileExists)
      throw new OvernightError('FILE_NOT_FOUND', `the model file ${model.path} is missing`);
    let gpu = device === 'gpu';
    if (device === 'auto') {
      const mem = await this.memory(modelId, columns);
      if (mem.gpu && !mem.fitsGpu) throw new OvernightError('OUT_OF_MEMORY', mem.message);
      gpu = mem.recommended === 'gpu';
    }
    if (this.loaded && (this.loaded.modelId !== modelId || this.loaded.gpu !== gpu)) {
      if (this.active.size + this.jobs.size > 0)
        throw new OvernightError(
          'CONFLICT',
          'another conversation or evaluation is using another model: stop it first',
        );
      await this.unload();
    }
    if (!this.loaded) {
      const llama = await this.d.llama();
      const chat = ChatModel.load(llama, {
        modelPath: model.path,
        gpu,
        ...(this.d.threads !== undefined ? { threads: this.d.threads } : {}),
      });
      this.loaded = { modelId, gpu, chat };
      chat.catch(() => {
        if (this.loaded?.chat === chat) this.loaded = null;
      });
    }
    try {
      return await this.loaded.chat;
    } catch (e) {
      throw new OvernightError(
        'INVALID_FILE',
        `loading ${model.path} for chat failed: ${(e as Error).message}`,
      );
    }
  }

  /** Keeps the loaded model while `work` runs (an evaluation job); returns `work`. */
  track<T>(work: Promise<T>): Promise<T> {
    const p = work.finally(() => this.jobs.delete(p));
    this.jobs.add(p);
    return p;
  }

  async unload(): Promise<boolean> {
    for (const id of [...this.active.keys()]) await this.stop(id);
    await Promise.allSettled([...this.jobs]);
    const l = this.loaded;
    this.loaded = null;
    if (!l) return false;
    await (await l.chat.catch(() => null))?.dispose();
    return true;
  }

  /** The adapter file of a variant (a kept checkpoint is exported on first use). */
  async adapter(v: Variant): Promise<AdapterRef | null> {
    switch (v.kind) {
      case 'base':
        return null;
      case 'run': {
        const r = this.requireRun(v.runId);
        if (!r.adapterPath || !existsSync(r.adapterPath))
          throw new Error(`run "${r.name}" has no final adapter file`);
        return { filePath: r.adapterPath, scale: v.scale };
      }
      case 'checkpoint': {
        const r = this.requireRun(v.runId);
        let path = this.checkpointAdapter(r, v.step);
        if (!existsSync(path)) path = await this.d.exportCheckpoint(r.id, v.step);
        return { filePath: path, scale: v.scale };
      }
      case 'file':
        if (!existsSync(v.path)) throw new Error(`the adapter file ${v.path} does not exist`);
        return { filePath: v.path, scale: v.scale };
    }
  }

  // --- answering -----------------------------------------------------------------------------

  /** Column `col`'s view of the conversation up to and including user turn `turn`. */
  private messages(c: StoredConversation, col: number, turn: number): Message[] {
    const msgs: Message[] = [];
    if (c.systemPrompt.trim()) msgs.push({ role: 'system', content: c.systemPrompt });
    for (const t of c.turnList) {
      if (t.index > turn) break;
      msgs.push({ role: 'user', content: t.user });
      if (t.index === turn) break;
      msgs.push({
        role: 'assistant',
        content: t.answers.find((a) => a.column === col)?.content ?? '',
      });
    }
    return msgs;
  }

  private start(id: string, turn: number): void {
    const ctrl = new AbortController();
    const done = this.answerAll(id, turn, ctrl.signal).finally(() => {
      this.active.delete(id);
      this.changed(id);
    });
    this.active.set(id, { ctrl, done });
    this.changed(id);
  }

  private async answerAll(id: string, turn: number, signal: AbortSignal): Promise<void> {
    const c = this.d.store.require(id);
    const chat = await this.loaded!.chat;
    await Promise.all(c.columns.map((col) => this.answer(chat, c, col, turn, signal)));
  }

  private async answer(
    chat: ChatModel,
    c: StoredConversation,
    col: CompareColumn,
    turn: number,
    signal: AbortSignal,
  ): Promise<void> {
    let pending = '';
    let last = 0;
    let tokens = 0;
    let tps = 0;
    const flush = () => {
      if (!pending) return;
      this.d.events.emit('compare.token', {
        id: c.id,
        turn,
        column: col.index,
        delta: pending,
        tokens,
        tokensPerSecond: tps,
      });
      pending = '';
      last = performance.now();
    };
    let answer: CompareAnswer;
    try {
      const column = await chat.column(await this.adapter(col.variant));
      const r = await column.generate(this.messages(c, col.index, turn), c.sampling, {
        signal,
        onText: (delta, n, speed) => {
          pending += delta;
          tokens = n;
          tps = speed;
          if (performance.now() - last >= TOKEN_EVENT_MS) flush();
        },
      });
      flush();
      answer = {
        column: col.index,
        content: r.text,
        tokens: r.tokens.length,
        tokensPerSecond: r.tokensPerSecond,
        finish: r.finish,
        error: null,
      };
    } catch (e) {
      flush();
      const msg =
        e instanceof ContextFullError || e instanceof OvernightError
          ? e.message
          : `${col.label}: ${(e as Error).message}`;
      answer = {
        column: col.index,
        content: '',
        tokens: 0,
        tokensPerSecond: 0,
        finish: 'error',
        error: msg,
      };
    }
    this.d.store.putAnswer(c.id, turn, answer);
    this.d.events.emit('compare.answer', { id: c.id, turn, answer });
  }

  /** Waits for every conversation's answers (tests, shutdown). */
  async idle(): Promise<void> {
    await Promise.all([...this.active.values()].map((a) => a.done));
  }

  async close(): Promise<void> {
    await this.unload();
  }
}

export function compareHandlers(s: CompareService): Handlers<CompareMethod> {
  return {
    'compare.variants': ({ modelId }) => s.variants(modelId),
    'compare.memory': ({ modelId, columns }) => s.memory(modelId, columns),
    'compare.create': (p) => s.create(p),
    'compare.list': () => s.list(),
    'compare.show': ({ id }) => s.show(id),
    'compare.send': ({ id, text }) => s.send(id, text),
    'compare.stop': ({ id }) => s.stop(id),
    'compare.regenerate': ({ id }) => s.regenerate(id),
    'compare.editLast': ({ id, text }) => s.editLast(id, text),
    'compare.clear': ({ id }) => s.clear(id),
    'compare.update': (p) => s.update(p),
    'compare.delete': async ({ id }) => ({ deleted: await s.delete(id) }),
    'compare.markdown': ({ id }) => s.markdown(id),
    'compare.unload': async () => ({ unloaded: await s.unload() }),
  };
}
