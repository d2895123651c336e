/**
 * The dataset library: rows in `datasets` (store/migrations/003-datasets.ts) over the stored
 * record files, the token views (stats, mask preview) under a chosen model, the `datasets.*`
 * handlers, and the port the runs domain uses (core/runs/datasets-port.ts).
 *
 * Token views load the model vocab-only through the engine's shared node-llama-cpp instance
 * and keep the last two vocabularies; stats are cached per (dataset, model, seqLen, mask).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Llama } from 'node-llama-cpp';
import {
  OvernightError,
  type DatasetInfo,
  type MethodOutput,
  type ModelInfo,
  type TokenStatsPayload,
} from '../../contract/index.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import type {
  DatasetPlan,
  DatasetPlanInput,
  PreparedInput,
  ProbePrompt,
  RunDatasetRef,
  RunDatasets,
} from '../runs/datasets-port.ts';
import type { Store } from '../store/db.ts';
import {
  datasetsDir,
  importDataset,
  inspectDataset,
  storedDatasetPath,
  type ScanOptions,
} from './import.ts';
import { readStoredRecords, recordOffsets } from './records.ts';
import {
  splitRecords,
  tokenStats,
  writeTrainerInput,
  type TokenStats,
  type TrainerInputResult,
} from './stats.ts';
import { RecordEncoder, TemplateError, type MaskMode } from './tokenize.ts';
import type { DatasetFormat, FieldMapping, FileKind, NormalizedRecord } from './types.ts';
import { loadVocab, type LoadedVocab } from './vocab.ts';

interface DatasetRow {
  id: string;
  name: string;
  source_name: string;
  source_path: string;
  source_size: number;
  kind: string;
  format: string;
  mapping: string;
  hash: string;
  records: number;
  stored_bytes: number;
  stats: string;
  counts: string;
  problems: string;
  created_at: string;
}

function toInfo(r: DatasetRow): DatasetInfo {
  return {
    id: r.id,
    name: r.name,
    sourceName: r.source_name,
    sourcePath: r.source_path,
    sourceSize: r.source_size,
    kind: r.kind as DatasetInfo['kind'],
    format: r.format as DatasetInfo['format'],
    mapping: JSON.parse(r.mapping) as DatasetInfo['mapping'],
    hash: r.hash,
    records: r.records,
    storedBytes: r.stored_bytes,
    stats: JSON.parse(r.stats) as DatasetInfo['stats'],
    counts: JSON.parse(r.counts) as DatasetInfo['counts'],
    problems: JSON.parse(r.problems) as DatasetInfo['problems'],
    createdAt: r.created_at,
  };
}

export interface SourceParams {
  path: string;
  kind?: FileKind;
  format?: DatasetFormat;
  mapping?: FieldMapping;
}

export interface DatasetLibraryDeps {
  store: Store;
  events: EventBus;
  dataDir: string;
  /** Looks up a model by id (NOT_FOUND otherwise). */
  model(id: string): ModelInfo;
  /** The engine's node-llama-cpp instance. */
  llama(): Promise<Llama>;
}

export class DatasetLibrary {
  private readonly vocabs = new Map<string, Promise<LoadedVocab>>();
  private readonly inUse = new Map<string, number>();
  private readonly statsCache = new Map<string, Promise<TokenStats>>();
  /** Inspections / imports in progress, by resolved path (for datasets.cancel). */
  private readonly running = new Map<string, AbortController>();
  /** Byte offset of each record, per stored file (built on first random access). */
  private readonly offsets = new Map<string, Promise<Float64Array>>();

  constructor(private readonly deps: DatasetLibraryDeps) {
    removeStaleTemps(datasetsDir(deps.dataDir));
  }

  /** Runs an inspection / import of `path` that `cancel(path)` can stop. */
  private async track<T>(path: string, f: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const key = resolve(path);
    if (this.running.has(key)) {
      throw new OvernightError(
        'CONFLICT',
        `${key} is already being read; wait for it or cancel it`,
      );
    }
    const ac = new AbortController();
    this.running.set(key, ac);
    try {
      return await f(ac.signal);
    } finally {
      this.running.delete(key);
    }
  }

  /** Stops a running inspection / import of `path`; nothing is stored. */
  cancel(path: string): boolean {
    const ac = this.running.get(resolve(path));
    ac?.abort();
    return ac !== undefined;
  }

  private get db() {
    return this.deps.store.db;
  }

  list(): DatasetInfo[] {
    return (
      this.db.prepare('SELECT * FROM datasets ORDER BY created_at, id').all() as DatasetRow[]
    ).map(toInfo);
  }
  get(id: string): DatasetInfo | null {
    const r = this.db.prepare('SELECT * FROM datasets WHERE id = ?').get(id) as
      DatasetRow | undefined;
    return r ? toInfo(r) : null;
  }
  require(id: string): DatasetInfo {
    const d = this.get(id);
    if (!d) throw new OvernightError('NOT_FOUND', `no dataset with id "${id}"`);
    return d;
  }
  storedPath(d: DatasetInfo): string {
    const p = storedDatasetPath(this.deps.dataDir, d.hash);
    if (!existsSync(p))
      throw new OvernightError(
        'FILE_NOT_FOUND',
        `the records of dataset "${d.name}" (${p}) are missing from the data folder`,
      );
    return p;
  }

  /** The records a run held out for validation: the same seeded split the trainer input used. */
  async validationRecords(
    datasetId: string,
    validationShare: number,
    seed: number,
  ): Promise<NormalizedRecord[]> {
    const path = this.storedPath(this.require(datasetId));
    const all: NormalizedRecord[] = [];
    for await (const r of readStoredRecords(path)) all.push(r);
    const isVal = splitRecords(all.length, validationShare, seed);
    return all.filter((_, i) => isVal[i] === 1);
  }

  private scanOptions(p: SourceParams, signal?: AbortSignal): ScanOptions {
    const path = resolve(p.path);
    return {
      path,
      kind: p.kind,
      format: p.format,
      mapping: p.mapping,
      signal,
      onProgress: (pr) => this.deps.events.emit('datasets.importProgress', { path, ...pr }),
    };
  }

  inspect(p: SourceParams) {
    return this.track(p.path, (signal) => inspectDataset(this.scanOptions(p, signal)));
  }

  async import(
    p: SourceParams & { name?: string; acceptProblems?: boolean },
  ): Promise<MethodOutput<'datasets.import'>> {
    const r = await this.track(p.path, (signal) =>
      importDataset({
        ...this.scanOptions(p, signal),
        dataDir: this.deps.dataDir,
        acceptProblems: p.acceptProblems,
      }),
    );
    if (r.status === 'needs_confirmation')
      return { status: 'needs_confirmation', problems: r.problems, counts: r.counts };
    const existing = this.db.prepare('SELECT * FROM datasets WHERE hash = ?').get(r.hash) as
      DatasetRow | undefined;
    if (existing)
      return {
        status: 'imported',
        dataset: toInfo(existing),
        problems: r.problems,
        existing: true,
      };
    const id = randomBytes(6).toString('hex');
    this.db
      .prepare(
        `INSERT INTO datasets (id, name, source_name, source_path, source_size, kind, format, mapping, hash, records,
           stored_bytes, stats, counts, problems, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        p.name ?? r.file.replace(/\.[^.]+$/, ''),
        r.file,
        r.path,
        r.size,
        r.kind,
        r.detection.format,
        JSON.stringify(r.detection.mapping),
        r.hash,
        r.counts.valid,
        r.storedBytes,
        JSON.stringify(r.stats),
        JSON.stringify(r.counts),
        JSON.stringify(r.problems.summary),
        new Date().toISOString(),
      );
    this.deps.events.emit('datasets.changed', { ids: [id] });
    return { status: 'imported', dataset: this.require(id), problems: r.problems, existing: false };
  }

  remove(id: string): boolean {
    const d = this.get(id);
    if (!d) return false;
    this.db.prepare('DELETE FROM datasets WHERE id = ?').run(id);
    rmSync(storedDatasetPath(this.deps.dataDir, d.hash), { force: true });
    for (const k of this.statsCache.keys()) if (k.startsWith(`${id}|`)) this.statsCache.delete(k);
    this.deps.events.emit('datasets.changed', { ids: [id] });
    return true;
  }

  async records(
    id: string,
    offset: number,
    limit: number,
  ): Promise<{ total: number; records: NormalizedRecord[] }> {
    const d = this.require(id);
    const path = this.storedPath(d);
    let offs = this.offsets.get(d.hash);
    if (!offs) {
      offs = recordOffsets(path);
      offs.catch(() => this.offsets.delete(d.hash));
      this.offsets.set(d.hash, offs);
    }
    const at = (await offs)[offset];
    const out: NormalizedRecord[] = [];
    if (at === undefined) return { total: d.records, records: out };
    for await (const r of readStoredRecords(path, undefined, at)) {
      out.push(r);
      if (out.length >= limit) break;
    }
    return { total: d.records, records: out };
  }

  /** The model's vocabulary (vocab-only load), the last two kept. */
  vocab(model: ModelInfo): Promise<LoadedVocab> {
    const key = `${model.id}|${model.fingerprint}`;
    let p = this.vocabs.get(key);
    if (!p) {
      if (!model.fileExists)
        throw new OvernightError(
          'FILE_NOT_FOUND',
          `model "${model.name}": ${model.path} is missing`,
        );
      p = this.deps.llama().then((llama) => loadVocab(llama, model.path));
      p.catch(() => this.vocabs.delete(key));
      this.vocabs.set(key, p);
      this.evict();
    }
    return p;
  }

  /** Keeps the last two vocabularies; one a token pass is still using stays until it ends. */
  private evict(): void {
    for (const [k, old] of this.vocabs) {
      if (this.vocabs.size <= 2) break;
      if ((this.inUse.get(k) ?? 0) > 0) continue;
      this.vocabs.delete(k);
      void old.then((v) => v.dispose()).catch(() => {});
    }
  }

  /** Runs f with the model's vocabulary held (not disposed by eviction meanwhile). */
  private async using<T>(model: ModelInfo, f: () => Promise<T>): Promise<T> {
    const key = `${model.id}|${model.fingerprint}`;
    this.inUse.set(key, (this.inUse.get(key) ?? 0) + 1);
    try {
      return await f();
    } finally {
      const n = (this.inUse.get(key) ?? 1) - 1;
      if (n > 0) this.inUse.set(key, n);
      else this.inUse.delete(key);
      this.evict();
    }
  }

  private async encoder(model: ModelInfo, mask: MaskMode, d: DatasetInfo): Promise<RecordEncoder> {
    const v = await this.vocab(model);
    if (!v.chatTemplate && d.format !== 'text') {
      throw new OvernightError(
        'UNSUPPORTED',
        `model "${model.name}" has no chat template (tokenizer.chat_template), so the conversations of "${d.name}" cannot be rendered; use a chat/instruct model`,
      );
    }
    return new RecordEncoder(v, mask);
  }

  async stats(
    id: string,
    modelId: string,
    seqLen: number,
    mask: MaskMode,
  ): Promise<TokenStatsPayload> {
    const d = this.require(id);
    const model = this.deps.model(modelId);
    const key = `${id}|${model.fingerprint}|${seqLen}|${mask}`;
    // The promise is cached, so a second request for the same view waits for the first pass.
    let p = this.statsCache.get(key);
    if (!p) {
      p = this.using(model, async () => {
        const enc = await this.encoder(model, mask, d);
        return tokenStats(readStoredRecords(this.storedPath(d)), enc, {
          seqLen,
          onProgress: (done) =>
            this.deps.events.emit('datasets.statsProgress', {
              id,
              modelId,
              done,
              total: d.records,
            }),
        });
      });
      p.catch(() => this.statsCache.delete(key));
      this.statsCache.set(key, p);
    }
    const s = await p;
    return { datasetId: id, modelId, mask, ...s, warnings: statsWarnings(s, model) };
  }

  async preview(
    id: string,
    modelId: string,
    index: number,
    mask: MaskMode,
  ): Promise<MethodOutput<'datasets.preview'>> {
    const d = this.require(id);
    if (index >= d.records)
      throw new OvernightError(
        'NOT_FOUND',
        `dataset "${d.name}" has ${d.records} records; index ${index} is out of range`,
      );
    const model = this.deps.model(modelId);
    const { records } = await this.records(id, index, 1);
    const record = records[0]!;
    return this.using(model, async () => {
      const v = await this.vocab(model);
      const enc = await this.encoder(model, mask, d);
      try {
        const e = enc.encode(record);
        // Each token's text in place (a SentencePiece token alone loses its space); the
        // pieces join to the rendered text (tokenize.ts, RecordEncoder.pieces).
        const texts = enc.pieces(e);
        const tokens = e.tokens.map((t, i) => ({
          id: t,
          text: texts[i]!,
          trained: e.mask[i] === 1,
          special: v.isSpecial(t),
        }));
        return {
          index,
          total: d.records,
          record,
          tokens,
          trained: e.trained,
          warning:
            e.trained === 0
              ? `Record ${index + 1} has zero trained tokens: training on it teaches nothing (mask "${mask}").`
              : null,
        };
      } catch (err) {
        if (!(err instanceof TemplateError)) throw err;
        return {
          index,
          total: d.records,
          record,
          tokens: [],
          trained: 0,
          warning: `Record ${index + 1} cannot be rendered with this model's chat template: ${err.message}`,
        };
      }
    });
  }

  // ---- the runs domain's port ----

  /** The port core/runs uses: ids or paths in, trainer input files out. */
  runPort(): RunDatasets {
    return {
      resolve: async (idOrPath): Promise<RunDatasetRef> => {
        const d = this.get(idOrPath);
        if (d) return { id: d.id, name: d.name, records: d.records };
        if (!existsSync(idOrPath))
          throw new OvernightError('NOT_FOUND', `"${idOrPath}" is neither a dataset id nor a file`);
        const r = await this.import({ path: idOrPath });
        if (r.status !== 'imported') {
          throw new OvernightError(
            'INVALID_FILE',
            `${idOrPath}: ${r.problems.errors} problem(s); import it first (overnight datasets import) to review and accept them`,
          );
        }
        return { id: r.dataset.id, name: r.dataset.name, records: r.dataset.records };
      },
      plan: async (input: DatasetPlanInput): Promise<DatasetPlan> => {
        const s = await this.stats(
          input.datasetId,
          input.model.id,
          input.sequenceLength,
          'assistant',
        );
        const valShare = s.records >= 2 ? input.validationShare : 0;
        const trainShare = 1 - valShare;
        return {
          trainWindows: Math.max(0, Math.round(s.windows * trainShare)),
          validationWindows: Math.round(s.windows * valShare),
          trainedTokens: Math.round(s.trainedTokensAtSeqLen * trainShare),
          fillRatio: s.fillRatio,
        };
      },
      prepare: async (input: DatasetPlanInput & { folder: string }): Promise<PreparedInput> => {
        const d = this.require(input.datasetId);
        const trainFile = join(input.folder, 'train.tokens');
        const validationFile =
          input.validationShare > 0 ? join(input.folder, 'validation.tokens') : null;
        // Written once: a resumed run with the same inputs reuses the files (the key names
        // everything that shapes them); a changed sequence length writes them again.
        // v2: windows packed by core/datasets/pack.ts (full text windows, best-fit chat).
        const key = JSON.stringify({
          v: 2,
          dataset: d.hash,
          model: input.model.fingerprint,
          seqLen: input.sequenceLength,
          validationShare: input.validationShare,
          seed: input.seed,
          mask: 'assistant',
        });
        const keyFile = join(input.folder, 'tokens.key.json');
        let r: TrainerInputResult | null = null;
        try {
          const saved = JSON.parse(readFileSync(keyFile, 'utf8')) as {
            key: string;
            result: TrainerInputResult;
          };
          const filesThere =
            existsSync(trainFile) &&
            (saved.result.validationWindows === 0 ||
              (validationFile !== null && existsSync(validationFile)));
          if (saved.key === key && filesThere) r = saved.result;
        } catch {
          /* no saved input: write it */
        }
        r ??= await this.using(input.model, async () => {
          const enc = await this.encoder(input.model, 'assistant', d);
          const res = await writeTrainerInput(this.storedPath(d), enc, trainFile, validationFile, {
            seqLen: input.sequenceLength,
            validationShare: input.validationShare,
            seed: input.seed,
          });
          writeFileSync(keyFile, JSON.stringify({ key, result: res }));
          return res;
        });
        if (r.trainedTokens === 0) {
          throw new OvernightError(
            'INVALID_FILE',
            `dataset "${d.name}" has zero trained tokens at sequence length ${input.sequenceLength}: nothing would be trained`,
          );
        }
        return {
          trainWindows: r.trainWindows,
          validationWindows: r.validationWindows,
          trainedTokens: r.trainedTokens,
          fillRatio: r.fillRatio,
          trainFile,
          validationFile: r.validationWindows > 0 ? validationFile : null,
        };
      },
      probePrompts: async ({ datasetId, model, prompts }): Promise<ProbePrompt[]> => {
        const d = this.require(datasetId);
        return this.using(model, async () => {
          const v = await this.vocab(model);
          // A chat dataset teaches answers to user turns: ask the probe as one, rendered and
          // tokenized by the same code as the masks (tokenize.ts), ending in the generation
          // prompt; the trainer generates until an end-of-generation token (the end of turn).
          if (d.format !== 'text' && v.chatTemplate) {
            const enc = new RecordEncoder(v, 'assistant');
            return prompts.map((text) => ({
              tokens: enc.promptTokens([{ role: 'user', content: text }]),
              label: text,
            }));
          }
          // A text dataset (continued pre-training) or a model without a template: plain text.
          return prompts.map((text) => {
            const tokens = v.tokenize(text, false);
            if (v.addBos && v.bos !== null) tokens.unshift(v.bos);
            return { tokens, label: text };
          });
        });
      },
    };
  }

  async dispose(): Promise<void> {
    for (const p of this.vocabs.values()) await p.then((v) => v.dispose()).catch(() => {});
    this.vocabs.clear();
  }
}

/** Temp files of imports whose process is gone (a crash or Ctrl-C mid-import). */
function removeStaleTemps(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^\.import-(\d+)-[0-9a-f]+\.tmp$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e) {
        alive = (e as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!alive) rmSync(join(dir, name), { force: true });
  }
}

function statsWarnings(s: TokenStats, model: ModelInfo): string[] {
  const w: string[] = [];
  if (s.records > 0 && s.trainedTokens === 0)
    w.push(
      'The whole dataset has ZERO trained tokens: training would learn nothing. Check the format and mask mode.',
    );
  else if (s.records > 0 && s.trainedTokensAtSeqLen === 0)
    w.push(
      `At sequence length ${s.seqLen} nothing is trained: every record is dropped. Raise the sequence length.`,
    );
  if (s.zeroTrained > 0)
    w.push(
      `${s.zeroTrained} record(s) have zero trained tokens (first: #${s.zeroTrainedSample.map((i) => i + 1).join(', #')}).`,
    );
  if (s.renderErrors > 0)
    w.push(
      `${s.renderErrors} record(s) cannot be rendered with ${model.name}'s chat template: ${s.renderErrorSample[0]?.message ?? ''}`,
    );
  if (s.dropped > 0) w.push(`${s.dropped} record(s) are dropped at sequence length ${s.seqLen}.`);
  if (s.truncated > 0)
    w.push(`${s.truncated} record(s) are truncated at sequence length ${s.seqLen}.`);
  if (s.seqLen > model.contextLength && model.contextLength > 0)
    w.push(
      `Sequence length ${s.seqLen} exceeds the model's context length ${model.contextLength}.`,
    );
  return w;
}

export type DatasetMethod =
  | 'datasets.inspect'
  | 'datasets.import'
  | 'datasets.list'
  | 'datasets.show'
  | 'datasets.remove'
  | 'datasets.records'
  | 'datasets.stats'
  | 'datasets.preview'
  | 'datasets.cancel';

export function datasetsHandlers(lib: DatasetLibrary): Handlers<DatasetMethod> {
  return {
    'datasets.inspect': (p) => lib.inspect(p),
    'datasets.import': (p) => lib.import(p),
    'datasets.list': () => lib.list(),
    'datasets.show': ({ id }) => lib.require(id),
    'datasets.remove': ({ id }) => ({ removed: lib.remove(id) }),
    'datasets.records': ({ id, offset, limit }) => lib.records(id, offset, limit),
    'datasets.stats': ({ id, modelId, seqLen, mask }) => lib.stats(id, modelId, seqLen, mask),
    'datasets.preview': ({ id, modelId, index, mask }) => lib.preview(id, modelId, index, mask),
    'datasets.cancel': ({ path }) => ({ cancelled: lib.cancel(path) }),
  };
}
