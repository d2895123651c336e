/**
 * Composition root: opens the store, builds each domain and registers its handlers.
 * Every shell (CLI, web server, Electron main) creates one engine and talks to it only
 * through `dispatcher` (requests) and `events` (notifications).
 *
 * Adding a domain (see docs/engine.md): a contract file, a `core/<domain>/` module exporting
 * `<domain>Handlers(...)`, one spread in `handlers` below, a migration if it stores anything.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CompareService, compareHandlers } from './compare/service.ts';
import { ConversationStore } from './compare/store.ts';
import { DatasetLibrary, datasetsHandlers } from './datasets/library.ts';
import { EvalService, evalHandlers } from './eval/service.ts';
import { EvalStore } from './eval/store.ts';
import { ExportService, exportHandlers } from './export/service.ts';
import { HubService, hubHandlers } from './hub/service.ts';
import { fileSecretStore, type SecretStore } from './hub/token.ts';
import { ModelLibrary, modelsHandlers } from './models/library.ts';
import { createDispatcher, type Dispatcher } from './rpc/dispatcher.ts';
import { createEventBus, type EventBus } from './rpc/events.ts';
import type { Handlers } from './rpc/handlers.ts';
import { trainingDevice } from './runs/device.ts';
import { RunsService, runsHandlers } from './runs/service.ts';
import { RunStore } from './runs/store.ts';
import { openStore, type Store } from './store/db.ts';
import { disposeSharedLlama, getSharedLlama } from './system/llama.ts';
import { systemHandlers } from './system/info.ts';
import { appVersion } from './version.ts';

export interface EngineOptions {
  dataDir: string;
  /** Reports INTERNAL errors (bugs) somewhere visible; default: stderr. */
  onInternalError?: (method: string, err: unknown) => void;
  /** Hugging Face base URL; default $OVERNIGHT_HUB_URL, else https://huggingface.co. */
  hubBaseUrl?: string;
  /** Automatic resumes of a download whose connection dropped (default 3; tests set 0). */
  hubRetries?: number;
  /** Where the hub access token lives; default a 0600 file in the data dir (core/hub/token.ts). */
  secretStore?: SecretStore;
}

export interface Engine {
  dataDir: string;
  dispatcher: Dispatcher;
  events: EventBus;
  store: Store;
  models: ModelLibrary;
  datasets: DatasetLibrary;
  /** Runs: `runs.start()` recovers interrupted runs and starts the queue (long-lived shells call it). */
  runs: RunsService;
  hub: HubService;
  /** Compare: chat with the base model and its adapters side by side. */
  compare: CompareService;
  /** Batch evaluation, blind A/B votes, perplexity (uses compare's chat model). */
  evals: EvalService;
  /** Exports of a run's adapter (GGUF adapter, Ollama package, PEFT), verified. */
  exports: ExportService;
  close(): Promise<void>;
}

export function createEngine(options: EngineOptions): Engine {
  const dataDir = resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const store = openStore(dataDir);
  const events = createEventBus();
  const models = new ModelLibrary(store, events);
  const datasets = new DatasetLibrary({
    store,
    events,
    dataDir,
    model: (id) => models.require(id),
    llama: getSharedLlama,
  });

  const runStore = new RunStore(store.db);
  const runs = new RunsService({
    dataDir,
    store: runStore,
    events,
    models,
    datasets: datasets.runPort(),
    device: (cfg) => trainingDevice(cfg, { dataDir, appVersion: appVersion() }),
    log: (msg) => console.error(`[runs] ${msg}`),
  });

  const hub = new HubService({
    dataDir,
    ...(options.hubBaseUrl !== undefined ? { baseUrl: options.hubBaseUrl } : {}),
    ...(options.hubRetries !== undefined ? { retries: options.hubRetries } : {}),
    secrets: options.secretStore ?? fileSecretStore(join(dataDir, 'hub-token')),
    models,
    events,
    device: () => trainingDevice({ backend: 'auto' }, { dataDir, appVersion: appVersion() }),
  });

  const compare = new CompareService({
    store: new ConversationStore(store.db),
    events,
    models,
    runs: {
      get: (id) => runStore.get(id),
      list: () => runStore.list(),
      checkpoints: (id) => runStore.checkpoints(id),
      metrics: (id, from, to) => runStore.metrics(id, from, to),
    },
    trainingRun: () => {
      const id = runs.supervisor.runningId();
      return id ? runStore.get(id) : null;
    },
    // Through the contract method (bound below), so compare does not depend on how the runs
    // domain writes the adapter.
    exportCheckpoint: async (id, step) =>
      (await dispatcher.call('runs.exportCheckpoint', { id, step })).path,
    llama: getSharedLlama,
    gpu: chatGpu,
  });

  const evals = new EvalService({
    store: new EvalStore(store.db),
    events,
    compare,
    runs: { get: (id) => runStore.get(id) },
    validationRecords: (id, share, seed) => datasets.validationRecords(id, share, seed),
  });

  const runPort = datasets.runPort();
  const exports = new ExportService({
    events,
    runs: { get: (id) => runStore.get(id), checkpoints: (id) => runStore.checkpoints(id) },
    models,
    // Through the contract method, like compare: the runs domain decides how it is written.
    exportCheckpoint: async (id, step) =>
      (await dispatcher.call('runs.exportCheckpoint', { id, step })).path,
    probePrompts: async (run, model, prompts) => {
      if (!runPort.probePrompts) throw new Error('the datasets domain cannot render probe prompts');
      return runPort.probePrompts({ datasetId: run.datasetId, model, prompts });
    },
    llama: getSharedLlama,
  });

  const handlers: Handlers = {
    ...modelsHandlers(models),
    ...datasetsHandlers(datasets),
    ...systemHandlers({ dataDir, appVersion: appVersion() }),
    ...runsHandlers(runs, runStore),
    ...hubHandlers(hub),
    ...compareHandlers(compare),
    ...evalHandlers(evals),
    ...exportHandlers(exports),
  };

  const dispatcher = createDispatcher(handlers, {
    onInternalError:
      options.onInternalError ??
      ((method, err) => {
        console.error(`[engine] internal error in ${method}:`, err);
      }),
  });

  let closed = false;
  return {
    dataDir,
    dispatcher,
    events,
    store,
    models,
    datasets,
    runs,
    hub,
    compare,
    evals,
    exports,
    async close() {
      if (closed) return;
      closed = true;
      await exports.close();
      await evals.close();
      await compare.close();
      await hub.close();
      await runs.close();
      await datasets.dispose();
      await disposeSharedLlama();
      store.close();
    },
  };
}

/** The inference runtime's GPU and its free memory now (chat's memory check); null: none. */
async function chatGpu(): Promise<{ name: string; freeBytes: number } | null> {
  const llama = await getSharedLlama().catch(() => null);
  if (!llama || llama.gpu === false) return null;
  const [names, vram] = await Promise.all([llama.getGpuDeviceNames(), llama.getVramState()]);
  return { name: `${names[0] ?? String(llama.gpu)} (${llama.gpu})`, freeBytes: vram.free };
}
