/**
 * Keep the computer awake while a run trains or waits in the queue ('prevent-app-suspension':
 * the display may still sleep), and release the blocker when the queue empties.
 */
import { powerSaveBlocker } from 'electron';
import type { Engine } from '../core/engine.ts';

export function keepAwakeWhileTraining(engine: Engine): () => void {
  let blocker: number | null = null;
  const sync = (): void => {
    const busy = engine.runs.busy();
    if (busy && blocker === null) blocker = powerSaveBlocker.start('prevent-app-suspension');
    if (!busy && blocker !== null) {
      powerSaveBlocker.stop(blocker);
      blocker = null;
    }
  };
  // After the supervisor has finished the transition (a failed run may be queued again at once).
  const off = engine.events.subscribe('runs.state', () => setImmediate(sync));
  sync();
  return () => {
    off();
    if (blocker !== null) powerSaveBlocker.stop(blocker);
  };
}
