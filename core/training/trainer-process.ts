// Supervisor side of the training process: forks the worker (core/training/worker.ts through tsx
// from source, dist/training/worker.js from a bundle: see workerEntry), sends the job, parses
// its IPC messages into typed events (contract/training.ts) and reports a crash (exit code /
// signal) as an error event, so a dead training process is never silent. A message that does
// not parse ends the run with E_PROTOCOL and the field it got wrong (the child is killed).
//
//   const p = new TrainerProcess();
//   p.on('event', (e: TrainingEvent) => ...);
//   p.start(job);
//   p.cancel(); p.checkpointNow(); p.pause();
//   const final = await p.finished;   // the last event: done or error
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTrainingEvent, PipeError } from '../../contract/training.ts';
import type { TrainingCommand, TrainingEvent, TrainingJob } from '../../contract/training.ts';
import { classifyDeath, memoryCgroupOf, oomKillCount } from './oom.ts';

/** util-linux's prlimit, which a memory cap needs (Linux only). */
function prlimitPath(): string {
  if (process.platform !== 'linux')
    throw new Error('a memory limit for the training process is supported on Linux only');
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir, 'prlimit');
    if (dir && existsSync(p)) return p;
  }
  throw new Error('a memory limit for the training process needs prlimit (util-linux): install it');
}

/**
 * Defined only inside the bundles electron/build.mjs writes (a banner line): the URL of the
 * bundled worker, dist/training/worker.js. Undefined when this module runs from source.
 */
declare const __OVERNIGHT_WORKER_URL__: string | undefined;

/** How to start the training child: the script to fork and the Node flags it needs. */
export interface WorkerEntry {
  path: string;
  execArgv: string[];
}

/**
 * The training child's entry, decided by what is running: from a bundle (dist/, the packaged
 * app), the bundled worker with plain Node and no loader; from source, worker.ts through tsx
 * (a dev dependency, absent from the packaged app).
 */
export function workerEntry(): WorkerEntry {
  if (typeof __OVERNIGHT_WORKER_URL__ === 'string') {
    return { path: fileURLToPath(__OVERNIGHT_WORKER_URL__), execArgv: [] };
  }
  return {
    path: fileURLToPath(new URL('./worker.ts', import.meta.url)),
    execArgv: ['--import', import.meta.resolve('tsx')],
  };
}

/**
 * Electron's own binary is process.execPath in the app: ELECTRON_RUN_AS_NODE makes the forked
 * child a plain Node process (the RunAsNode fuse must stay enabled). Nothing in plain Node.
 */
const electronAsNode: NodeJS.ProcessEnv = process.versions.electron
  ? { ELECTRON_RUN_AS_NODE: '1' }
  : {};

export type FinalEvent = Extract<TrainingEvent, { type: 'done' } | { type: 'error' }>;

export interface TrainerProcessOptions {
  /** Extra environment for the child (e.g. OVERNIGHT_NATIVE_VERBOSE=1). */
  env?: NodeJS.ProcessEnv;
  /** Forward the child's stdout/stderr to ours (default true). */
  inheritOutput?: boolean;
  /**
   * Cap on the training process's address space in bytes (Linux, `prlimit --as`, util-linux):
   * an allocation past it fails inside the trainer and the run ends with E_OOM instead of the
   * machine swapping or the kernel killing something. CPU training only (GPU drivers map far
   * more address space than they use). Default: $OVERNIGHT_TRAINER_MEMORY_LIMIT (bytes, or with
   * a K/M/G suffix), else none.
   */
  memoryLimitBytes?: number;
  /**
   * A cgroup folder to run the training process in (its pid goes to `cgroup.procs` before the
   * job is sent), e.g. one with a `memory.max` / `memory.limit_in_bytes`: the kernel then kills
   * only the trainer when it goes over, and oom.ts reports that as E_OOM. Default:
   * $OVERNIGHT_TRAINER_CGROUP, else the engine's own cgroup.
   */
  cgroup?: string;
  /** The script to fork instead of workerEntry() (tests of the pipe itself). */
  worker?: WorkerEntry;
}

/** Bytes from "1073741824", "1024M", "1.5G"; throws on anything else. */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a size in bytes (e.g. 2147483648, 2048M or 2G)`);
  const unit = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase()]!;
  return Math.floor(Number(m[1]) * unit);
}

export declare interface TrainerProcess {
  on(ev: 'event', l: (e: TrainingEvent) => void): this;
  on(ev: 'exit', l: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

export class TrainerProcess extends EventEmitter {
  private child: ChildProcess | null = null;
  private final: FinalEvent | null = null;
  private resolveFinished!: (e: FinalEvent) => void;
  readonly finished: Promise<FinalEvent>;
  /** stderr of the child (last 64 KiB), to explain crashes. */
  stderrTail = '';

  constructor(private readonly opts: TrainerProcessOptions = {}) {
    super();
    this.finished = new Promise((r) => (this.resolveFinished = r));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(job: TrainingJob): void {
    if (this.child || this.final) throw new Error('TrainerProcess.start: already started');
    let worker: WorkerEntry;
    try {
      worker = this.opts.worker ?? workerEntry();
      if (!existsSync(worker.path)) {
        throw new Error(`the training worker ${worker.path} is missing (npm run build writes it)`);
      }
    } catch (err) {
      // An incomplete install or build (no bundled worker; no tsx from source): say what is
      // missing, as a failure not worth retrying, instead of throwing into the supervisor.
      const e: FinalEvent = {
        type: 'error',
        code: 'E_NO_ADDON',
        message: `cannot start the training process: ${(err as Error).message}`,
      };
      this.final = e;
      setImmediate(() => {
        this.emit('event', e);
        this.emit('exit', null, null);
        this.resolveFinished(e);
      });
      return;
    }
    const env = { ...process.env, ...electronAsNode, ...this.opts.env };
    const limitText = env.OVERNIGHT_TRAINER_MEMORY_LIMIT;
    const limit = this.opts.memoryLimitBytes ?? (limitText ? parseBytes(limitText) : undefined);
    const cgroup = this.opts.cgroup ?? env.OVERNIGHT_TRAINER_CGROUP;
    // With a memory cap, prlimit sets RLIMIT_AS and then execs Node (same pid, same IPC channel).
    const launcher = limit === undefined ? null : prlimitPath();
    const child = fork(worker.path, [], {
      ...(launcher
        ? {
            execPath: launcher,
            // Under an address-space cap, V8 must not reserve guard regions (10+ GB) or the
            // largest possible memory (4 GB) for each WebAssembly instance (tsx uses two).
            execArgv: [
              `--as=${limit}`,
              '--',
              process.execPath,
              '--disable-wasm-trap-handler',
              '--wasm-max-mem-pages=1024',
              ...worker.execArgv,
            ],
          }
        : { execArgv: worker.execArgv }),
      env,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    this.child = child;
    if (cgroup && child.pid) {
      try {
        writeFileSync(join(cgroup, 'cgroup.procs'), String(child.pid));
      } catch (err) {
        child.kill('SIGKILL');
        throw new Error(
          `cannot run the training process in cgroup ${cgroup}: ${(err as Error).message}`,
        );
      }
    }
    // The oom_kill counter of the child's memory cgroup now and after it died (oom.ts).
    const memCgroup = child.pid ? memoryCgroupOf(child.pid) : null;
    const oomKillsBefore = oomKillCount(memCgroup);
    const inherit = this.opts.inheritOutput ?? true;
    child.stdout?.on('data', (d: Buffer) => {
      if (inherit) process.stdout.write(d);
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-65536);
      if (inherit) process.stderr.write(d);
    });
    child.on('message', (raw: unknown) => {
      if (this.final) return; // nothing counts after the result (or a refused message)
      let e: TrainingEvent;
      try {
        e = parseTrainingEvent(raw);
      } catch (err) {
        if (!(err instanceof PipeError)) throw err;
        this.final = { type: 'error', code: 'E_PROTOCOL', message: err.message };
        this.emit('event', this.final);
        child.kill('SIGKILL');
        return;
      }
      if (e.type === 'done' || e.type === 'error') this.final = e;
      this.emit('event', e);
    });
    child.on('close', (code, signal) => {
      if (!this.final) {
        // Out of memory (an allocation failure it printed, or the kernel's OOM killer) or a crash.
        const death = classifyDeath({
          code,
          signal,
          stderrTail: this.stderrTail,
          cgroup: memCgroup,
          oomKillsBefore,
          oomKillsAfter: oomKillCount(memCgroup),
        });
        const e: FinalEvent = { type: 'error', ...death };
        this.final = e;
        this.emit('event', e);
      }
      this.emit('exit', code, signal);
      this.resolveFinished(this.final);
    });
    this.send({ type: 'start', job });
  }

  private send(c: TrainingCommand): void {
    if (this.child?.connected) this.child.send(c);
  }
  cancel(): void {
    this.send({ type: 'cancel' });
  }
  checkpointNow(): void {
    this.send({ type: 'checkpoint' });
  }
  pause(): void {
    this.send({ type: 'pause' });
  }
  /** Hard stop (SIGKILL); reported as a crash unless the run had already finished. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child?.kill(signal);
  }
}
