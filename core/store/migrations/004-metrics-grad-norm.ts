import type { Migration } from '../migration.ts';

/**
 * The pre-clip global gradient norm of every step (RunMetric.gradNorm). Nullable: steps stored
 * before the trainer reported it keep NULL, and the run page leaves them out of its chart.
 * Runs created before gradient clipping existed were trained without it: their configs get
 * `gradClipNorm: 0`, so they say so and a resume continues as they started (the new config
 * fields weightDecay, adamBeta1 and adamBeta2 default to the values those runs used).
 */
export const migration: Migration = {
  version: 4,
  name: 'metrics-grad-norm',
  up(db) {
    db.exec(`
      ALTER TABLE run_metrics ADD COLUMN grad_norm REAL;
      UPDATE runs SET config = json_set(config, '$.gradClipNorm', 0)
        WHERE json_type(config, '$.gradClipNorm') IS NULL;
    `);
  },
};
