/**
 * The rules of a run's life, as pure functions over plain values: which state follows which
 * event, when a dead trainer is resumed and with what, when early stopping fires, which
 * checkpoints are kept. The supervisor (supervisor.ts) applies them; nothing here touches a
 * process, a file or the database, so every rule is unit-tested on its own.
 *
 *   queued --start--> running --done--> completed
 *                      |  \--stopped(pause)--> paused --resume--> queued
 *                      |  \--stopped(cancel)--> cancelled
 *                      |  \--crashed--> failed --(retry left)--> queued
 *                      \--engine died--> interrupted --(autoResume | resume)--> queued
 * `resume` of a queued, running or completed run changes nothing (resumePlan).
 */
import { OvernightError, type Run, type RunConfig, type RunState } from '../../contract/index.ts';
import { fatalTrainerErrors, type TrainerErrorCode } from '../../contract/training.ts';

export type RunEvent =
  | { type: 'start' }
  | { type: 'done'; reason: string }
  | { type: 'stopped'; intent: 'pause' | 'cancel' }
  | { type: 'crashed'; reason: string }
  | { type: 'engineRestarted' }
  | { type: 'resume' }
  | { type: 'pause' }
  | { type: 'cancel' };

const allowed: Record<RunEvent['type'], readonly RunState[]> = {
  start: ['queued'],
  done: ['running'],
  stopped: ['running'],
  crashed: ['running'],
  engineRestarted: ['running'],
  resume: ['paused', 'failed', 'interrupted'],
  // Pausing or cancelling a running run is a request to the trainer: the state changes when it
  // has stopped ('stopped'), so only not-running runs change here.
  pause: ['queued'],
  cancel: ['queued', 'paused', 'failed', 'interrupted'],
};

/** The state an event leads to, or a CONFLICT error naming the state and the event. */
export function nextState(state: RunState, ev: RunEvent): RunState {
  if (!allowed[ev.type].includes(state)) {
    throw new OvernightError('CONFLICT', `cannot ${ev.type} a run that is ${state}`);
  }
  switch (ev.type) {
    case 'start':
      return 'running';
    case 'done':
      return 'completed';
    case 'stopped':
      return ev.intent === 'pause' ? 'paused' : 'cancelled';
    case 'crashed':
      return 'failed';
    case 'engineRestarted':
      return 'interrupted';
    case 'resume':
      return 'queued';
    case 'pause':
      return 'paused';
    case 'cancel':
      return 'cancelled';
  }
}

/**
 * What resuming does to a run in each state. `overnight runs resume <id>` is what a user types
 * after a crash, and the engine start that command makes may already have queued the run
 * (autoResume), started it, or failed it and queued a retry; the command must reach the run
 * whatever that start did. So resume is idempotent:
 *   paused, failed, interrupted -> enqueue (back to the queue, from the last checkpoint)
 *   queued, running             -> follow (already on its way; nothing changes)
 *   completed                   -> finished (nothing left to train; not an error)
 *   cancelled                   -> CONFLICT: cancelling is final (clone the config to train again)
 */
export type ResumePlan = 'enqueue' | 'follow' | 'finished';

export function resumePlan(state: RunState): ResumePlan {
  if (state === 'queued' || state === 'running') return 'follow';
  if (state === 'completed') return 'finished';
  if (state === 'cancelled') {
    throw new OvernightError(
      'CONFLICT',
      'cannot resume a run that was cancelled: cancelling is final; clone its config to train again',
    );
  }
  nextState(state, { type: 'resume' });
  return 'enqueue';
}

/** Why the supervisor stopped a running trainer, if it did. */
export type StopIntent = 'pause' | 'cancel' | 'early-stop' | 'shutdown';

/** How the training process ended: its `done` event, its error, or neither (it died). */
export interface TrainerResult {
  done: { status: 'completed' | 'cancelled' | 'paused'; step: number } | null;
  error: { code: TrainerErrorCode; message: string } | null;
}

/**
 * The state a run ends a training process in. `adapter`: which adapter a completed run keeps
 * ('trainer' = the one the trainer wrote at its last step, 'checkpoint' = one written from a
 * kept checkpoint, e.g. after early stopping). `crash`: the run died and `decideAfterCrash`
 * says whether it is retried. `finished` runs get a finish time.
 */
export type RunEnding =
  | { state: 'completed'; reason: string; adapter: 'trainer' | 'checkpoint'; finished: true }
  | { state: 'paused' | 'interrupted'; reason: string; finished: false }
  | { state: 'cancelled' | 'failed'; reason: string; finished: true }
  | { state: 'crash'; error: { code: TrainerErrorCode; message: string } };

/**
 * The end of a training process as a state: the trainer's result read against what the
 * supervisor asked for. A pause for early stopping completes the run; a pause or a cancel
 * for the engine's shutdown interrupts it (it resumes on the next start); a fatal trainer
 * error (contract/training.ts fatalTrainerErrors) fails it for good; any other death is a crash.
 */
export function endOf(
  r: TrainerResult,
  intent: StopIntent | null,
  earlyReason: string | null,
): RunEnding {
  const done = r.done;
  if (done?.status === 'completed') {
    return {
      state: 'completed',
      reason: earlyReason ?? `Completed ${done.step} steps.`,
      adapter: 'trainer',
      finished: true,
    };
  }
  if (done && intent === 'shutdown') {
    const from = done.status === 'paused' ? 'its checkpoint' : 'its last checkpoint';
    return {
      state: 'interrupted',
      reason: `The app was closed during the run; it resumes from ${from}.`,
      finished: false,
    };
  }
  if (done?.status === 'paused' && intent === 'early-stop') {
    return {
      state: 'completed',
      reason: earlyReason ?? `Early stopping at step ${done.step}.`,
      adapter: 'checkpoint',
      finished: true,
    };
  }
  if (done?.status === 'paused')
    return { state: 'paused', reason: `Paused at step ${done.step}.`, finished: false };
  if (done?.status === 'cancelled')
    return { state: 'cancelled', reason: 'Cancelled by the user.', finished: true };
  const error = r.error ?? {
    code: 'E_CRASH',
    message: 'the training process ended without a result',
  };
  if (intent === 'shutdown') {
    return {
      state: 'interrupted',
      reason: `The app was closed during the run (${error.message}).`,
      finished: false,
    };
  }
  if (fatalTrainerErrors.has(error.code))
    return { state: 'failed', reason: `${error.code}: ${error.message}`, finished: true };
  return { state: 'crash', error };
}

/** Out-of-memory fallbacks applied on top of the user's config (stored with the run). */
export type Overrides = Run['overrides'];

/** The config the trainer actually gets: the user's, with out-of-memory fallbacks applied. */
export function effectiveConfig(cfg: RunConfig, o: Overrides): RunConfig {
  // Only the overrides that exist today: a run stored by an earlier version may also hold a
  // `gradAccumulation` override, which no longer means anything.
  return o.sequenceLength === undefined ? { ...cfg } : { ...cfg, sequenceLength: o.sequenceLength };
}

export type CrashDecision =
  | { retry: true; reason: string; overrides: Overrides }
  | { retry: false; reason: string; overrides: Overrides };

/**
 * After the trainer died: resume from the last checkpoint while retries remain. Out of memory
 * is retried only when the user allowed a fallback, each time with half the sequence length
 * (not below 64 tokens). The trainer already runs one window per micro-batch, so there is no
 * smaller micro-batch to fall back to. Retrying unchanged after an OOM would only fail again.
 */
export function decideAfterCrash(
  cfg: RunConfig,
  o: Overrides,
  retriesUsed: number,
  crash: { message: string; oom: boolean; step: number },
): CrashDecision {
  const eff = effectiveConfig(cfg, o);
  if (crash.oom) {
    const what = `Out of memory at step ${crash.step}: the model, adapter and activations did not fit on the device.`;
    if (!cfg.oomFallback) {
      return {
        retry: false,
        reason: `${what} Lower the sequence length, or allow the automatic fallback.`,
        overrides: o,
      };
    }
    if (retriesUsed >= cfg.maxRetries) {
      return {
        retry: false,
        reason: `${what} Gave up after ${retriesUsed} retries.`,
        overrides: o,
      };
    }
    if (eff.sequenceLength / 2 >= 64) {
      const seq = Math.floor(eff.sequenceLength / 2);
      return {
        retry: true,
        reason: `${what} Retrying from the last checkpoint with sequence length ${seq}.`,
        overrides: { ...o, sequenceLength: seq },
      };
    }
    return {
      retry: false,
      reason: `${what} Nothing smaller is left to try: choose a smaller model.`,
      overrides: o,
    };
  }
  const what = `The training process died at step ${crash.step}: ${crash.message}`;
  if (retriesUsed >= cfg.maxRetries) {
    return {
      retry: false,
      reason: `${what} Gave up after ${retriesUsed} automatic ${retriesUsed === 1 ? 'retry' : 'retries'}.`,
      overrides: o,
    };
  }
  return {
    retry: true,
    reason: `${what} Resuming from the last checkpoint (retry ${retriesUsed + 1} of ${cfg.maxRetries}).`,
    overrides: o,
  };
}

export interface EarlyStopState {
  bestLoss: number | null;
  bestStep: number | null;
  /** Evaluations since the last improvement. */
  badEvals: number;
}

export const earlyStopStart: EarlyStopState = { bestLoss: null, bestStep: null, badEvals: 0 };

/**
 * One validation result. An improvement is a loss below best - minDelta; `stop` is true after
 * `patience` evaluations in a row without one. Replaying a run's stored evals in step order
 * rebuilds the state after a resume.
 */
export function observeEval(
  s: EarlyStopState,
  step: number,
  valLoss: number,
  cfg: Pick<RunConfig, 'earlyStopping' | 'patience' | 'minDelta'>,
): EarlyStopState & { improved: boolean; stop: boolean } {
  const improved =
    Number.isFinite(valLoss) && (s.bestLoss === null || valLoss < s.bestLoss - cfg.minDelta);
  const next: EarlyStopState = improved
    ? { bestLoss: valLoss, bestStep: step, badEvals: 0 }
    : { ...s, badEvals: s.badEvals + 1 };
  return { ...next, improved, stop: cfg.earlyStopping && next.badEvals >= cfg.patience };
}

/**
 * Which checkpoints to delete: all but the newest `keep` and the best one. Steps are what
 * identify checkpoints; the result is sorted ascending.
 */
export function checkpointsToDelete(
  steps: readonly number[],
  keep: number,
  bestStep: number | null,
): number[] {
  const newest = new Set([...steps].sort((a, b) => b - a).slice(0, keep));
  return steps.filter((s) => !newest.has(s) && s !== bestStep).sort((a, b) => a - b);
}
