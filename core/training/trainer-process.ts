// Supervisor side of the training process: forks core/training/worker.ts, sends the job, turns
// its IPC messages into typed events and reports a crash (exit code / signal) as an error event,
// so a dead training process is never silent.
//
//   const p = new TrainerProcess();
//   p.on('event', (e: TrainingEvent) => ...);
//   p.start(job);
//   p.cancel(); p.checkpointNow(); p.pause();
//   const final = await p.finished;   // the last event: done or error
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { TrainingCommand, TrainingEvent, TrainingJob } from './job.ts';

export const WORKER_PATH = fileURLToPath(new URL('./worker.ts', import.meta.url));

export type FinalEvent = Extract<TrainingEvent, { type: 'done' } | { type: 'error' }>;

export interface TrainerProcessOptions {
  /** Extra environment for the child (e.g. OVERNIGHT_NATIVE_VERBOSE=1). */
  env?: NodeJS.ProcessEnv;
  /** Forward the child's stdout/stderr to ours (default true). */
  inheritOutput?: boolean;
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
    if (this.child) throw new Error('TrainerProcess.start: already started');
    const tsx = import.meta.resolve('tsx');
    const child = fork(WORKER_PATH, [], {
      execArgv: ['--import', tsx],
      env: { ...process.env, ...this.opts.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    this.child = child;
    const inherit = this.opts.inheritOutput ?? true;
    child.stdout?.on('data', (d: Buffer) => {
      if (inherit) process.stdout.write(d);
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-65536);
      if (inherit) process.stderr.write(d);
    });
    child.on('message', (e: TrainingEvent) => {
      if (e.type === 'done' || e.type === 'error') this.final = e;
      this.emit('event', e);
    });
    child.on('close', (code, signal) => {
      if (!this.final) {
        const last = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
        const why = signal ? `was killed by ${signal}${signal === 'SIGKILL' ? ' (possibly out of memory)' : ''}` : `exited with code ${code}`;
        const e: FinalEvent = {
          type: 'error',
          code: signal === 'SIGKILL' ? 'E_CRASH' : 'E_CRASH',
          message: `the training process ${why} without reporting a result${last ? `; last output: ${last}` : ''}`,
        };
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
