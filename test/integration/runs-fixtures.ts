/**
 * Shared set-up of the runs integration tests: a real store, model library, event bus and
 * RunsService in a temp data folder, running the REAL training process on a tiny generated model.
 *
 * Datasets here are pre-tokenized windows (native/ts/token-data.ts files the test writes), given
 * to the runs domain through its RunDatasets port: the tests are about the supervisor, not about
 * chat templates. `prepare` splits them into train / validation files in the run folder the way
 * the datasets domain does (validation share, at least one window each side).
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { TokenDataReader, writeTokenData, type TokenWindow } from '../../native/ts/token-data.ts';
import { ModelLibrary } from '../../core/models/library.ts';
import { createEventBus, type EventBus } from '../../core/rpc/events.ts';
import { openStore, type Store } from '../../core/store/db.ts';
import type { RunDatasets } from '../../core/runs/datasets-port.ts';
import { RunsService } from '../../core/runs/service.ts';
import { RunStore } from '../../core/runs/store.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

/** A file of `n` windows of `seqLen` tokens; labels are the next token (every position trained). */
export function writeWindows(
  path: string,
  n: number,
  seqLen: number,
  token: (w: number, t: number) => number,
): string {
  const windows: TokenWindow[] = [];
  for (let w = 0; w < n; w++) {
    const seq = Array.from({ length: seqLen + 1 }, (_, t) => token(w, t));
    windows.push({
      tokens: Int32Array.from(seq.slice(0, seqLen)),
      labels: Int32Array.from(seq.slice(1)),
    });
  }
  writeTokenData(path, seqLen, windows);
  return path;
}

/** Datasets given as `{ train, validation }` token files, registered by id. */
export class TokenFileDatasets implements RunDatasets {
  readonly files = new Map<string, { train: string; validation: string | null }>();

  add(id: string, train: string, validation: string | null): string {
    this.files.set(id, { train, validation });
    return id;
  }

  private get(id: string) {
    const f = this.files.get(id);
    if (!f) throw Object.assign(new Error(`no dataset "${id}"`), { code: 'NOT_FOUND' });
    return f;
  }

  async resolve(id: string) {
    const f = this.get(id);
    const r = new TokenDataReader(f.train);
    const n = r.nWindows;
    r.close();
    return { id, name: basename(f.train), records: n };
  }

  async plan(input: { datasetId: string; sequenceLength: number }) {
    const f = this.get(input.datasetId);
    const count = (p: string | null) => {
      if (!p) return { windows: 0, tokens: 0 };
      const r = new TokenDataReader(p);
      let tokens = 0;
      for (let i = 0; i < r.nWindows; i++) tokens += r.trainedTokens(i);
      const out = { windows: r.nWindows, tokens };
      r.close();
      return out;
    };
    const t = count(f.train);
    const v = count(f.validation);
    return { trainWindows: t.windows, validationWindows: v.windows, trainedTokens: t.tokens };
  }

  async prepare(input: { datasetId: string; sequenceLength: number; folder: string }) {
    const f = this.get(input.datasetId);
    const trainFile = join(input.folder, 'train.tok');
    const validationFile = f.validation ? join(input.folder, 'validation.tok') : null;
    if (!existsSync(trainFile)) copyFileSync(f.train, trainFile);
    if (validationFile && f.validation && !existsSync(validationFile))
      copyFileSync(f.validation, validationFile);
    return { ...(await this.plan(input)), trainFile, validationFile };
  }
}

export interface RunsFixture {
  dir: string;
  dataDir: string;
  store: Store;
  events: EventBus;
  models: ModelLibrary;
  runStore: RunStore;
  datasets: TokenFileDatasets;
  service: RunsService;
  modelId: string;
  close(): Promise<void>;
}

export async function runsFixture(
  opts: { dir?: string; datasets?: TokenFileDatasets } = {},
): Promise<RunsFixture> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'overnight-'));
  const dataDir = join(dir, 'data');
  const store = openStore(dataDir);
  const events = createEventBus();
  const models = new ModelLibrary(store, events);
  const tiny = await tinyModel({ type: 'q8_0' });
  const existing = models.list().find((m) => m.fingerprint && m.path === tiny.path);
  const modelId = existing?.id ?? (await models.add(tiny.path)).id;
  const runStore = new RunStore(store.db);
  const datasets = opts.datasets ?? new TokenFileDatasets();
  const service = new RunsService({
    dataDir,
    store: runStore,
    events,
    models,
    datasets,
    device: async () => ({ name: 'CPU (system RAM)', freeBytes: 8 * 1024 ** 3 }),
    inheritTrainerOutput: process.env.OVERNIGHT_TEST_VERBOSE === '1',
    log: process.env.OVERNIGHT_TEST_VERBOSE === '1' ? (m) => console.error(m) : undefined,
  });
  return {
    dir,
    dataDir,
    store,
    events,
    models,
    runStore,
    datasets,
    service,
    modelId,
    async close() {
      await service.close(5000);
      store.close();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
