/**
 * Child process of a merged-model export (core/export/merge-process.ts forks it): loads the
 * native addon, which never shares a process with node-llama-cpp, runs one mergeAdapter and
 * reports over IPC. Messages in: { type: 'start', options } once, { type: 'cancel' }. Out:
 * { type: 'progress', phase, done, total } per tensor, then exactly one { type: 'done', result }
 * or { type: 'error', code, message }. A lost parent cancels the merge (its partials go with it).
 */
import {
  mergeAdapter,
  NativeError,
  type MergeJob,
  type MergeOptions,
} from '../../native/ts/binding.ts';

type Command = { type: 'start'; options: MergeOptions } | { type: 'cancel' };

let job: MergeJob | null = null;
let cancelled = false;

function send(m: object): void {
  if (process.connected) process.send!(m);
}

function finish(m: object): void {
  send(m);
  // let the message flush, then leave (the IPC channel would keep the process alive)
  setImmediate(() => process.disconnect?.());
}

process.on('message', (m: Command) => {
  if (m.type === 'cancel') {
    cancelled = true;
    job?.cancel();
    return;
  }
  if (m.type !== 'start' || job) return;
  try {
    job = mergeAdapter(m.options, (p) => {
      send({ type: 'progress', ...p });
      if (cancelled) job?.cancel();
    });
  } catch (e) {
    const err = e as NativeError;
    finish({ type: 'error', code: err.code ?? 'E_NATIVE', message: err.message });
    return;
  }
  if (cancelled) job.cancel();
  job.promise.then(
    (result) => finish({ type: 'done', result }),
    (e: NativeError) => finish({ type: 'error', code: e.code ?? 'E_NATIVE', message: e.message }),
  );
});

process.on('disconnect', () => {
  cancelled = true;
  job?.cancel();
});
