/**
 * Adapters from kept checkpoints: `runs.exportCheckpoint` (adapter-step-N.gguf beside the run's
 * others) and the final adapter of a run that ends on its best evaluation or after early
 * stopping. The real trainer writes each one (job.ts exportJob: resume, take no step, save), in
 * its own training process; a checkpoint from before an out-of-memory fallback is rebased to
 * the sequence length of the data file first (rebase.ts).
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { OvernightError, type ModelInfo, type Run } from '../../contract/index.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import { TrainerProcess } from '../training/trainer-process.ts';
import { exportJob, INPUT_FILE, readRunInputs } from './job.ts';
import { effectiveConfig } from './lifecycle.ts';
import { readModelDims } from './model-dims.ts';
import { checkpointAtSeqLen } from './rebase.ts';
import type { RunStore } from './store.ts';

export interface ExportDeps {
  store: RunStore;
  models: { get(id: string): ModelInfo | null };
  trainerEnv?: NodeJS.ProcessEnv;
  inheritTrainerOutput?: boolean;
}

export class RunExporter {
  /** `deviceBusy`: a run is training or starting (exporting loads the model too). */
  constructor(
    private readonly d: ExportDeps,
    private readonly deviceBusy: () => boolean,
  ) {}

  /** Write `out` from the checkpoint of `run` at `step` (file `path`), with `dataPath`'s length. */
  async fromCheckpoint(
    run: Run,
    { step, path, dataPath, out }: { step: number; path: string; dataPath: string; out: string },
  ): Promise<string> {
    const model = this.d.models.get(run.modelId);
    if (!model) throw new Error(`model ${run.modelId} is no longer in the library`);
    const scratchDir = join(run.folder, 'export-tmp');
    mkdirSync(scratchDir, { recursive: true });
    // A checkpoint from before an out-of-memory fallback has the longer sequence of its time;
    // the data file has the current one. No step is taken, so only the recorded length matters.
    const data = new TokenDataReader(dataPath);
    const { seqLen, nWindows } = data;
    data.close();
    const from = checkpointAtSeqLen(path, join(scratchDir, 'rebased.ovck'), {
      seqLen,
      oldWindows: nWindows,
      newWindows: nWindows,
    });
    const proc = new TrainerProcess({
      env: this.d.trainerEnv,
      inheritOutput: this.d.inheritTrainerOutput ?? false,
    });
    const jobRun = { ...run, config: effectiveConfig(run.config, run.overrides) };
    proc.start(
      exportJob(
        jobRun,
        { step, path: from },
        {
          modelPath: model.path,
          trainFile: dataPath,
          // An export trains nothing, on the CPU (the job's default backend): system RAM.
          memory: {
            dims: await readModelDims(model.path, model.vocabSize),
            freeBytes: os.freemem(),
          },
        },
        { adapterPath: out, scratchDir },
      ),
    );
    const fin = await proc.finished;
    rmSync(scratchDir, { recursive: true, force: true });
    if (fin.type === 'error')
      throw new Error(`exporting the checkpoint at step ${step}: ${fin.code}: ${fin.message}`);
    if (!fin.adapterPath)
      throw new Error(`exporting the checkpoint at step ${step} wrote no adapter`);
    return fin.adapterPath;
  }

  /** runs.exportCheckpoint: an adapter GGUF from a kept checkpoint, beside the run's others. */
  async kept(id: string, step: number): Promise<string> {
    const run = this.d.store.require(id);
    const c = this.d.store.checkpoints(id).find((x) => x.step === step);
    if (!c || !existsSync(c.path)) {
      throw new OvernightError(
        'NOT_FOUND',
        `run "${run.name}" has no kept checkpoint at step ${step}`,
      );
    }
    if (this.deviceBusy()) {
      throw new OvernightError(
        'CONFLICT',
        'a run is training: exporting loads the model too; try again when the device is free',
      );
    }
    const inputs = readRunInputs(run.folder);
    if (!inputs)
      throw new OvernightError(
        'FILE_NOT_FOUND',
        `${join(run.folder, INPUT_FILE)} is missing: the run folder is incomplete`,
      );
    const out = join(run.folder, `adapter-step-${step}.gguf`);
    return this.fromCheckpoint(run, { step, path: c.path, dataPath: inputs.trainFile, out });
  }
}
