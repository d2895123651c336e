// Entry of the training child process (fork it with trainer-process.ts). It loads the native
// trainer (llama.cpp/ggml) in its own process, away from node-llama-cpp in the engine process.
// Protocol (child_process IPC, JSON):
//   parent -> child: { type: 'start', job } once, then { type: 'cancel' | 'checkpoint' | 'pause' }
//   child -> parent: TrainingEvent (job.ts): ready, step, eval, probe, checkpoint, log, then
//                    exactly one of done / error, after which the process exits (0 / 1).
// A crash (native abort, OOM kill) ends the process without done/error; the parent reports it.
import type { TrainingCommand, TrainingEvent } from './job.ts';
import { isAllocationFailure } from './oom.ts';
import { TrainingRun } from './run.ts';

if (!process.send) {
  console.error(
    'core/training/worker.ts must be started with child_process.fork (IPC channel missing)',
  );
  process.exit(2);
}

const pending = new Set<Promise<void>>();
const send = (e: TrainingEvent): Promise<void> => {
  const p = new Promise<void>((resolve) => {
    process.send!(e, undefined, {}, () => resolve());
  });
  pending.add(p);
  void p.then(() => pending.delete(p));
  return p;
};

let run: TrainingRun | null = null;

process.on('message', (m: TrainingCommand) => {
  if (m.type === 'start') {
    if (run) return void send({ type: 'log', message: 'ignored a second start message' });
    run = new TrainingRun(m.job, (e) => void send(e));
    run
      .run()
      .then(async () => {
        process.exitCode = 0;
      })
      .catch(async (e: unknown) => {
        const err = e as { code?: string; message?: string };
        let code = err.code ?? 'E_NATIVE';
        if (code === 'ERR_INVALID_ARG_TYPE') code = 'E_CONFIG';
        // std::bad_alloc from the addon, a failed Buffer/ArrayBuffer allocation: out of memory.
        if (
          (code === 'E_NATIVE' || !code.startsWith('E_')) &&
          isAllocationFailure(`${err.message ?? e}`)
        )
          code = 'E_OOM';
        await send({ type: 'error', code, message: err.message ?? String(e) });
        process.exitCode = 1;
      })
      .finally(async () => {
        await Promise.all(pending); // every event reaches the parent before the channel closes
        process.disconnect?.();
      });
  } else if (m.type === 'cancel') run?.cancel();
  else if (m.type === 'checkpoint') run?.checkpointNow();
  else if (m.type === 'pause') run?.pause();
});

// the parent going away (IPC closed) cancels the run
process.on('disconnect', () => run?.cancel());
