/**
 * The runs domain as the engine sees it: validate and queue runs, estimate them, list / show /
 * compare / edit / delete them, and hand control requests to the supervisor. `runsHandlers`
 * maps every `runs.*` method of the contract onto it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  OvernightError,
  presets,
  runConfigDefaults,
  runsMethods,
  type ModelInfo,
  type Run,
  type RunConfig,
  type RunEstimate,
  type TimeEstimate,
} from '../../contract/index.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import { TrainerProcess } from '../training/trainer-process.ts';
import type { RunDatasets } from './datasets-port.ts';
import {
  memoryEstimate,
  plannedSteps,
  isGpuDevice,
  resolveCheckpointing,
  stepsForDeadline,
} from './estimate.ts';
import { calibrationJob, type JobMemory } from './job.ts';
import { readModelDims } from './model-dims.ts';
import { readPlacement } from './placement.ts';
import type { RunStore } from './store.ts';
import { RunSupervisor } from './supervisor.ts';
import {
  requireValid,
  validateRun,
  type ModelSource,
  type RunValidation,
  type ValidatedConfig,
} from './validate.ts';

export type RunsMethod = keyof typeof runsMethods;

export interface RunsDeps {
  dataDir: string;
  store: RunStore;
  events: EventBus;
  models: ModelSource;
  datasets: RunDatasets;
  /** Free memory of the device a config would train on. */
  device(cfg: RunConfig): Promise<{ name: string; freeBytes: number; backend?: string }>;
  trainerEnv?: NodeJS.ProcessEnv;
  inheritTrainerOutput?: boolean;
  log?: (msg: string) => void;
}

/** Steps a calibration measures; the first is left out of the pace (graph build, warm caches). */
export const CALIBRATION_STEPS = 4;

export class RunsService {
  readonly supervisor: RunSupervisor;

  get store(): RunStore {
    return this.d.store;
  }

  constructor(private readonly d: RunsDeps) {
    this.supervisor = new RunSupervisor({
      store: d.store,
      events: d.events,
      models: d.models,
      datasets: d.datasets,
      trainerEnv: d.trainerEnv,
      inheritTrainerOutput: d.inheritTrainerOutput,
      log: d.log,
      device: d.device,
    });
  }

  /** Engine start: recover runs a dead engine left behind and start the queue. */
  start(): void {
    this.supervisor.recover();
  }

  /** A run is training or queued (Electron keeps the computer awake meanwhile). */
  busy(): boolean {
    return this.supervisor.busy();
  }

  close(timeoutMs?: number): Promise<void> {
    return this.supervisor.close(timeoutMs);
  }

  /** The config and its problems (none: it can be queued); a config off the schema throws. */
  check(raw: unknown): Promise<RunValidation> {
    return validateRun(raw, { models: this.d.models, datasets: this.d.datasets });
  }

  async validate(raw: unknown): Promise<ValidatedConfig> {
    return requireValid(await this.check(raw));
  }

  async estimate(raw: unknown, calibrate: boolean): Promise<RunEstimate> {
    const v = await this.validate(raw);
    return this.estimateValidated(v, calibrate);
  }

  private async estimateValidated(v: ValidatedConfig, calibrate: boolean): Promise<RunEstimate> {
    const dims = await readModelDims(v.model.path, v.model.vocabSize);
    const device = await this.d.device(v.config);
    const memory = memoryEstimate(v.config, dims, device);
    const { stepsPerEpoch, totalSteps } = plannedSteps(v.config, v.trainWindows);
    const jobMemory = { dims, freeBytes: device.freeBytes };
    const time = calibrate ? await this.calibrate(v, totalSteps, jobMemory, device.backend) : null;
    return {
      memory,
      checkpointing: resolveCheckpointing(
        v.config.checkpointing,
        v.config,
        dims,
        device.freeBytes,
        isGpuDevice(device),
      ),
      trainWindows: v.trainWindows,
      fillRatio: v.fillRatio,
      stepsPerEpoch,
      totalSteps,
      time,
    };
  }

  /** A few real optimizer steps in a scratch folder, with the run's own model, data and config. */
  private async calibrate(
    v: ValidatedConfig,
    totalSteps: number,
    memory: JobMemory,
    backend: string | undefined,
  ): Promise<TimeEstimate> {
    if (this.supervisor.runningId()) {
      throw new OvernightError(
        'CONFLICT',
        'a run is training: the time estimate needs the device; try again when it is free',
      );
    }
    const dir = mkdtempSync(join(this.d.dataDir, 'calibrate-'));
    try {
      const input = await this.d.datasets.prepare({
        datasetId: v.datasetId,
        model: v.model,
        sequenceLength: v.config.sequenceLength,
        validationShare: v.config.validationShare,
        seed: v.config.seed,
        folder: dir,
      });
      const job = calibrationJob(
        v.config,
        { modelPath: v.model.path, trainFile: input.trainFile, memory, backend },
        CALIBRATION_STEPS,
        dir,
      );
      const proc = new TrainerProcess({
        env: this.d.trainerEnv,
        inheritOutput: this.d.inheritTrainerOutput ?? false,
      });
      const stepMs: number[] = [];
      const tps: number[] = [];
      let peak = 0;
      proc.on('event', (e) => {
        if (e.type !== 'step') return;
        stepMs.push(e.stepMs);
        tps.push(e.metric.tokensPerSecond);
        peak = Math.max(peak, e.metric.memoryBytes ?? 0);
      });
      proc.start(job);
      const fin = await proc.finished;
      if (fin.type === 'error')
        throw new OvernightError(
          fin.code === 'E_OOM' ? 'OUT_OF_MEMORY' : 'INTERNAL',
          `calibration failed: ${fin.message}`,
        );
      const paced = stepMs.length > 1 ? stepMs.slice(1) : stepMs;
      const paceTps = tps.length > 1 ? tps.slice(1) : tps;
      const secondsPerStep = paced.reduce((a, b) => a + b, 0) / Math.max(1, paced.length) / 1000;
      return {
        calibratedSteps: stepMs.length,
        secondsPerStep,
        tokensPerSecond: paceTps.reduce((a, b) => a + b, 0) / Math.max(1, paceTps.length),
        totalSteps,
        totalSeconds: secondsPerStep * totalSteps,
        measuredPeakBytes: peak || null,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async create(raw: unknown, name?: string): Promise<Run> {
    const v = await this.validate(raw);
    const est = await this.estimateValidated(v, v.config.finishBy !== null);
    let totalSteps = est.totalSteps;
    if (v.config.finishBy && est.time) {
      totalSteps = stepsForDeadline(v.config.finishBy, new Date(), est.time.secondsPerStep).steps;
      est.totalSteps = totalSteps;
      est.time.totalSteps = totalSteps;
      est.time.totalSeconds = totalSteps * est.time.secondsPerStep;
    }
    if (est.memory.verdict === 'will-not-fit') {
      throw new OvernightError(
        'OUT_OF_MEMORY',
        `this run will not fit in ${est.memory.device} memory (needs about ${gib(est.memory.totalBytes)}, ` +
          `${gib(est.memory.deviceFreeBytes)} free). ${est.memory.advice.join(' ')}`,
      );
    }
    const id = randomBytes(6).toString('hex');
    const run = this.d.store.insert({
      id,
      name: name ?? defaultName(v.model, v.config),
      config: v.config,
      modelId: v.model.id,
      datasetId: v.datasetId,
      folder: join(this.d.dataDir, 'runs', id),
      totalSteps,
      estimate: est,
    });
    this.d.events.emit('runs.state', run);
    this.supervisor.pump();
    return this.d.store.require(id);
  }

  edit(id: string, patch: { name?: string; notes?: string }): Run {
    const run = this.d.store.update(id, patch);
    this.d.events.emit('runs.state', run);
    return run;
  }

  delete(id: string): boolean {
    const r = this.d.store.require(id);
    if (r.state === 'running') {
      throw new OvernightError(
        'CONFLICT',
        `run "${r.name}" is running: pause or cancel it before deleting it`,
      );
    }
    rmSync(r.folder, { recursive: true, force: true });
    return this.d.store.delete(id);
  }

  compare(ids: string[]) {
    const runs = ids.map((id) => ({
      run: this.d.store.require(id),
      metrics: this.d.store.metrics(id),
      evals: this.d.store.evals(id),
    }));
    const fields = ['model', 'dataset', ...Object.keys(runConfigDefaults)] as (keyof RunConfig)[];
    const diff = fields
      .map((field) => ({ field, values: runs.map((r) => r.run.config[field] as unknown) }))
      .filter((d) => new Set(d.values.map((x) => JSON.stringify(x))).size > 1);
    return { runs, diff };
  }
}

const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;

function defaultName(model: ModelInfo, cfg: RunConfig): string {
  const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
  return `${model.name} · ${cfg.preset} · ${when}`;
}

export function runsHandlers(s: RunsService, store: RunStore): Handlers<RunsMethod> {
  return {
    'runs.presets': () =>
      presets.map((p) => ({ id: p.id, label: p.label, explain: p.explain, config: p.config })),
    'runs.lastConfig': () => store.lastConfig(),
    'runs.validate': async ({ config }) => {
      const v = await s.check(config);
      return { config: v.config, problems: v.problems.map((p) => p.message) };
    },
    'runs.estimate': ({ config, calibrate }) => s.estimate(config, calibrate),
    'runs.create': ({ config, name }) => s.create(config, name),
    'runs.clone': ({ id }) => store.require(id).config,
    'runs.list': ({ state, search }) => store.list({ state, search }),
    'runs.show': ({ id }) => {
      s.supervisor.flushPending(id);
      const run = store.require(id);
      return {
        run,
        evals: store.evals(id),
        checkpoints: store.checkpoints(id),
        probes: store.probes(id),
        placement: readPlacement(run.folder),
      };
    },
    'runs.metrics': ({ id, fromStep, toStep }) => {
      store.require(id);
      s.supervisor.flushPending(id);
      return store.metrics(id, fromStep, toStep);
    },
    'runs.pause': ({ id }) => s.supervisor.pause(id),
    'runs.resume': ({ id }) => s.supervisor.resume(id),
    'runs.cancel': ({ id }) => s.supervisor.cancel(id),
    'runs.checkpointNow': ({ id }) => {
      s.supervisor.checkpointNow(id);
      return { ok: true as const };
    },
    'runs.rename': ({ id, name }) => s.edit(id, { name }),
    'runs.setNotes': ({ id, notes }) => s.edit(id, { notes }),
    'runs.delete': ({ id }) => ({ deleted: s.delete(id) }),
    'runs.exportCheckpoint': async ({ id, step }) => ({
      path: await s.supervisor.exporter.kept(id, step),
    }),
    'runs.compare': ({ ids }) => s.compare(ids),
    'runs.settings': () => store.settings(),
    'runs.setSettings': (patch) => store.setSettings(patch),
  };
}
