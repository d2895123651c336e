/**
 * The export domain: `export.run` resolves the run's adapter (its final one, or a kept
 * checkpoint's, written by the real trainer through `runs.exportCheckpoint`), the base model and
 * the name, refuses an existing target without `overwrite`, then hands one `ExportContext` to the
 * format's module (formats/index.ts): write (atomic, cancellable, progress events), verify
 * (every check in the result), command lines. `export.cancel` aborts by job id.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Llama } from 'node-llama-cpp';
import {
  OvernightError,
  exportFormats,
  type ExportProgress,
  type ExportRequest,
  type ExportResult,
  type ModelInfo,
  type Run,
  type RunCheckpoint,
  type exportMethods,
} from '../../contract/index.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import { checkName, prepareOutDir, refuseExisting, safeName } from './files.ts';
import type { ExportContext } from './format.ts';
import { formatModules } from './formats/index.ts';
import { readGgufHeader } from './gguf.ts';
import { ProbeSet, type ProbePromptTokens } from './verify.ts';

export type ExportMethod = keyof typeof exportMethods;

/** Asked when a run has no probe prompts (the greedy check needs something to ask). */
export const FALLBACK_PROBES = ['Hello!', 'What can you do?'];

export interface ExportDeps {
  events: EventBus;
  runs: { get(id: string): Run | null; checkpoints(id: string): RunCheckpoint[] };
  models: { get(id: string): ModelInfo | null };
  /** The trainer writes an adapter from a kept checkpoint (runs.exportCheckpoint). */
  exportCheckpoint(runId: string, step: number): Promise<string>;
  /** The run's probe prompts rendered and tokenized as the run asks them. */
  probePrompts(run: Run, model: ModelInfo, prompts: string[]): Promise<ProbePromptTokens[]>;
  llama: () => Promise<Llama>;
  /** Threads for the verification contexts (default 1: exports run beside everything else). */
  threads?: number;
}

export class ExportService {
  private readonly jobs = new Map<string, AbortController>();

  constructor(private readonly d: ExportDeps) {}

  formats() {
    return exportFormats.map((f) => formatModules[f].info);
  }

  cancel(jobId: string): boolean {
    const c = this.jobs.get(jobId);
    if (!c) return false;
    c.abort();
    return true;
  }

  async run(req: ExportRequest): Promise<ExportResult> {
    const jobId = req.jobId ?? randomBytes(6).toString('hex');
    if (this.jobs.has(jobId))
      throw new OvernightError('CONFLICT', `an export with job id "${jobId}" is already running`);
    const ctrl = new AbortController();
    this.jobs.set(jobId, ctrl);
    let probes: ProbeSet | null = null;
    const emit = (p: Omit<ExportProgress, 'jobId' | 'runId' | 'format'>): void =>
      this.d.events.emit('export.progress', { jobId, runId: req.runId, format: req.format, ...p });
    try {
      const run = this.d.runs.get(req.runId);
      if (!run) throw new OvernightError('NOT_FOUND', `no run with id "${req.runId}"`);
      const model = this.d.models.get(run.modelId);
      if (!model)
        throw new OvernightError(
          'NOT_FOUND',
          `run "${run.name}": its model ${run.modelId} is no longer in the library`,
        );
      if (!existsSync(model.path))
        throw new OvernightError(
          'FILE_NOT_FOUND',
          `run "${run.name}": the base model ${model.path} is missing`,
        );
      const mod = formatModules[req.format];
      const checkpoint = req.checkpoint ?? null;
      const name =
        req.name !== undefined
          ? checkName(req.name)
          : safeName(
              run.name,
              model.name.replace(/\.gguf$/i, ''),
              checkpoint === null ? '' : `step${checkpoint}`,
            );
      if (checkpoint !== null) this.requireKept(run, checkpoint);
      const outDir = prepareOutDir(req.outDir);
      const target = mod.target(outDir, name, req);
      refuseExisting(target, req.overwrite);

      emit({ phase: 'source', done: 0, total: 0, message: 'finding the adapter' });
      const source = await this.source(run, checkpoint);
      if (ctrl.signal.aborted) throw cancelled();
      probes = new ProbeSet({
        llama: this.d.llama,
        modelPath: model.path,
        threads: this.d.threads ?? 1,
        prompts: () =>
          this.d.probePrompts(
            run,
            model,
            run.config.probePrompts.length ? [...run.config.probePrompts] : FALLBACK_PROBES,
          ),
      });
      let last = 0;
      const ctx: ExportContext = {
        run,
        model,
        checkpoint,
        source,
        adapter: readGgufHeader(source),
        base: readGgufHeader(model.path),
        outDir,
        name,
        overwrite: req.overwrite,
        precision: req.precision,
        signal: ctrl.signal,
        probes,
        request: req,
        progress: (done, total, message) => {
          const now = Date.now();
          if (done < total && now - last < 100) return;
          last = now;
          emit({ phase: 'write', done, total, message });
        },
      };
      mod.check?.(ctx);
      const written = await mod.write(ctx);
      emit({ phase: 'verify', done: 0, total: 0, message: 'verifying the export' });
      const checks = await mod.verify(ctx, written);
      const result: ExportResult = {
        jobId,
        runId: run.id,
        format: req.format,
        checkpoint,
        source,
        path: written.path,
        files: written.files,
        verification: { ok: checks.every((c) => c.ok), checks },
        commands: mod.commands(ctx, written),
      };
      emit({
        phase: 'done',
        done: 0,
        total: 0,
        message: result.verification.ok ? 'verified' : 'verification failed',
      });
      return result;
    } finally {
      this.jobs.delete(jobId);
      await probes?.dispose();
    }
  }

  /** The run's own adapter: final, or the kept checkpoint's (written by the trainer once). */
  private async source(run: Run, checkpoint: number | null): Promise<string> {
    if (checkpoint === null) {
      if (!run.adapterPath || !existsSync(run.adapterPath))
        throw new OvernightError(
          'NOT_FOUND',
          `run "${run.name}" has no final adapter (it is ${run.state}); export one of its kept checkpoints instead`,
        );
      return run.adapterPath;
    }
    this.requireKept(run, checkpoint);
    return this.d.exportCheckpoint(run.id, checkpoint);
  }

  private requireKept(run: Run, checkpoint: number): void {
    const kept = this.d.runs.checkpoints(run.id).map((c) => c.step);
    if (!kept.includes(checkpoint))
      throw new OvernightError(
        'NOT_FOUND',
        `run "${run.name}" has no kept checkpoint at step ${checkpoint} (kept: ${kept.join(', ') || 'none'})`,
      );
  }

  async close(): Promise<void> {
    for (const c of this.jobs.values()) c.abort();
  }
}

function cancelled(): OvernightError {
  return new OvernightError('CANCELLED', 'the export was cancelled');
}

export function exportHandlers(s: ExportService): Handlers<ExportMethod> {
  return {
    'export.formats': () => s.formats(),
    'export.run': (p) => s.run(p),
    'export.cancel': ({ jobId }) => ({ cancelled: s.cancel(jobId) }),
  };
}
