/**
 * Shared set-up of the runs integration tests: a real store, model library, event bus and
 * RunsService in a temp data folder, running the REAL training process on a tiny generated model.
 *
 * Datasets here are generated token windows (native/ts/token-data.ts files), given to the runs
 * domain through its RunDatasets port: these tests are about the supervisor, not chat templates
 * (test/integration/runs-engine.test.ts goes through the real datasets domain).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenData, type TokenWindow } from '../../native/ts/token-data.ts';
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

/** A dataset as generated windows: how many, and the token at position t of window w. */
export interface WindowSpec {
  train: number;
  validation: number;
  token: (w: number, t: number) => number;
  validationToken?: (w: number, t: number) => number;
}

/**
 * Datasets of generated windows, registered by id. `prepare` writes them at the run's
 * sequence length (every position trained), like the datasets domain writes tokenized records.
 */
export class TokenFileDatasets implements RunDatasets {
  readonly specs = new Map<string, WindowSpec>();

  add(id: string, spec: WindowSpec): string {
    this.specs.set(id, spec);
    return id;
  }

  private get(id: string): WindowSpec {
    const s = this.specs.get(id);
    if (!s) throw Object.assign(new Error(`no dataset "${id}"`), { code: 'NOT_FOUND' });
    return s;
  }

  async resolve(id: string) {
    const s = this.get(id);
    return { id, name: id, records: s.train + s.validation };
  }

  async plan(input: { datasetId: string; sequenceLength: number; validationShare: number }) {
    const s = this.get(input.datasetId);
    const validationWindows = input.validationShare > 0 ? s.validation : 0;
    return {
      trainWindows: s.train,
      validationWindows,
      trainedTokens: s.train * input.sequenceLength,
      fillRatio: 1,
    };
  }

  async prepare(input: {
    datasetId: string;
    sequenceLength: number;
    validationShare: number;
    folder: string;
  }) {
    const s = this.get(input.datasetId);
    const plan = await this.plan(input);
    const trainFile = writeWindows(
      join(input.folder, 'train.tokens'),
      s.train,
      input.sequenceLength,
      s.token,
    );
    const validationFile =
      plan.validationWindows > 0
        ? writeWindows(
            join(input.folder, 'validation.tokens'),
            s.validation,
            input.sequenceLength,
            s.validationToken ?? s.token,
          )
        : null;
    return { ...plan, trainFile, validationFile };
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
  opts: { dir?: string; datasets?: TokenFileDatasets; trainerEnv?: NodeJS.ProcessEnv } = {},
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
    trainerEnv: opts.trainerEnv,
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
