// Entry of the training child process (fork it with trainer-process.ts). It loads the native
// trainer (llama.cpp/ggml) in its own process, away from node-llama-cpp in the engine process.
// Protocol (child_process IPC, JSON; schemas in contract/training.ts, parsed on both ends):
//   parent -> child: { type: 'start', job } once, then { type: 'cancel' | 'checkpoint' | 'pause' }
//   child -> parent: TrainingEvent: ready, step (a RunMetric), eval, probe, checkpoint, log, then
//                    exactly one of done / error, after which the process exits (0 / 1).
// A crash (native abort, OOM kill) ends the process without done/error; the parent reports it.
// A command that does not parse is answered with a log event and otherwise ignored.
import {
  isTrainerErrorCode,
  parseTrainingCommand,
  PipeError,
  type TrainerErrorCode,
  type TrainingEvent,
  type TrainingJob,
} from '../../contract/training.ts';
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

/**
 * The pipe's error of a failed run: the trainer's own code when the pipe knows it, E_OOM for an
 * allocation failure (std::bad_alloc from the addon, a failed Buffer), else E_NATIVE with the
 * original code in the message.
 */
function failureOf(e: unknown): { code: TrainerErrorCode; message: string } {
  const err = e as { code?: unknown; message?: string };
  const message = err.message ?? String(e);
  const raw = typeof err.code === 'string' ? err.code : null;
  if (raw && isTrainerErrorCode(raw) && raw !== 'E_NATIVE') return { code: raw, message };
  if (raw === 'ERR_INVALID_ARG_TYPE') return { code: 'E_CONFIG', message };
  if (isAllocationFailure(message)) return { code: 'E_OOM', message };
  return { code: 'E_NATIVE', message: raw && raw !== 'E_NATIVE' ? `${raw}: ${message}` : message };
}

let run: TrainingRun | null = null;

function start(job: TrainingJob): void {
  if (run) return void send({ type: 'log', message: 'ignored a second start message' });
  run = new TrainingRun(job, (e) => void send(e));
  run
    .run()
    .then(() => {
      process.exitCode = 0;
    })
    .catch(async (e: unknown) => {
      await send({ type: 'error', ...failureOf(e) });
      process.exitCode = 1;
    })
    .finally(async () => {
      await Promise.all(pending); // every event reaches the parent before the channel closes
      process.disconnect?.();
    });
}

process.on('message', (raw: unknown) => {
  let m;
  try {
    m = parseTrainingCommand(raw);
  } catch (e) {
    if (!(e instanceof PipeError)) throw e;
    return void send({ type: 'log', message: `ignored: ${e.message}` });
  }
  // The job itself is parsed by the run (a bad job ends it with E_CONFIG).
  if (m.type === 'start') start(m.job as TrainingJob);
  else if (m.type === 'cancel') run?.cancel();
  else if (m.type === 'checkpoint') run?.checkpointNow();
  else if (m.type === 'pause') run?.pause();
});

// the parent going away (IPC closed) cancels the run
process.on('disconnect', () => run?.cancel());
