/**
 * Runs one native merge (native/src/merge.cpp through native/ts/binding.ts mergeAdapter) in its
 * own child process, as TrainerProcess runs the trainer: the engine process holds node-llama-cpp
 * and must never load the trainer addon, and stays responsive while the merge works. Progress
 * arrives per tensor; `signal` cancels (the merge stops within one tensor and removes its
 * partial files); a child that does not stop within `killAfterMs` is killed and its partials
 * (`<out>.partial`, `<out>.f16.partial`) removed here. Native error codes become OvernightErrors.
 */
import { fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OvernightError, type ErrorCode } from '../../contract/index.ts';
import type { MergeOptions, MergeProgress, MergeResult } from '../../native/ts/binding.ts';

/** Defined only inside the bundles electron/build.mjs writes: the bundled merge worker. */
declare const __OVERNIGHT_MERGE_WORKER_URL__: string | undefined;

function entry(): { path: string; execArgv: string[] } {
  if (typeof __OVERNIGHT_MERGE_WORKER_URL__ === 'string')
    return { path: fileURLToPath(__OVERNIGHT_MERGE_WORKER_URL__), execArgv: [] };
  return {
    path: fileURLToPath(new URL('./merge-worker.ts', import.meta.url)),
    execArgv: ['--import', import.meta.resolve('tsx')],
  };
}

/** Native merge codes (docs/native.md "Merging") as the engine's error codes. */
const codes: Record<string, ErrorCode> = {
  E_CANCELLED: 'CANCELLED',
  E_DISK_FULL: 'NO_SPACE',
  E_EXISTS: 'CONFLICT',
  E_MODEL: 'INVALID_FILE',
  E_ADAPTER: 'INVALID_FILE',
  E_MISMATCH: 'INVALID_FILE',
  E_TYPE: 'UNSUPPORTED',
  E_INPUT: 'INVALID_INPUT',
  E_OOM: 'OUT_OF_MEMORY',
};

export function partialsOf(outPath: string): string[] {
  return [`${outPath}.partial`, `${outPath}.f16.partial`];
}

export function runMergeProcess(
  options: MergeOptions,
  o: {
    signal: AbortSignal;
    onProgress: (p: MergeProgress) => void;
    /** After a cancel, how long the child may take to stop before it is killed. */
    killAfterMs?: number;
    env?: NodeJS.ProcessEnv;
    /** Told the child's pid once it is forked. */
    onSpawn?: (pid: number) => void;
  },
): Promise<MergeResult> {
  const e = entry();
  const child = fork(e.path, [], {
    execArgv: e.execArgv,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: {
      ...process.env,
      ...(process.versions.electron ? { ELECTRON_RUN_AS_NODE: '1' } : {}),
      ...o.env,
    },
  });
  if (child.pid !== undefined) o.onSpawn?.(child.pid);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  return new Promise<MergeResult>((resolve, reject) => {
    let settled = false;
    let killed = false;
    let killTimer: NodeJS.Timeout | null = null;
    const settle = (err: Error | null, r?: MergeResult): void => {
      if (settled) return;
      settled = true;
      o.signal.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      if (err) {
        for (const p of partialsOf(options.outPath)) rmSync(p, { force: true });
        reject(err);
      } else resolve(r!);
    };
    const onAbort = (): void => {
      if (child.connected) child.send({ type: 'cancel' });
      // settled on 'close', once the killed child can no longer create a partial file
      killTimer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, o.killAfterMs ?? 10_000);
    };
    if (o.signal.aborted) onAbort();
    else o.signal.addEventListener('abort', onAbort, { once: true });
    child.on(
      'message',
      (
        m: { type: string; result?: MergeResult; code?: string; message?: string } & MergeProgress,
      ) => {
        if (m.type === 'progress') o.onProgress({ phase: m.phase, done: m.done, total: m.total });
        else if (m.type === 'done') settle(null, m.result);
        else if (m.type === 'error') {
          const code = codes[m.code ?? ''] ?? 'INTERNAL';
          settle(
            new OvernightError(
              code,
              code === 'INTERNAL' ? `merge failed (${m.code}): ${m.message}` : m.message!,
            ),
          );
        }
      },
    );
    child.on('close', (code, signal) => {
      if (killed) {
        settle(new OvernightError('CANCELLED', 'the merge was cancelled (its process was killed)'));
        return;
      }
      settle(
        new OvernightError(
          o.signal.aborted ? 'CANCELLED' : 'INTERNAL',
          `the merge process ended (${signal ?? `exit code ${code}`}) without a result` +
            (stderr ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''),
        ),
      );
    });
    child.send({ type: 'start', options });
  });
}
