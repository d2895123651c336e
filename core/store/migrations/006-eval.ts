import type { Migration } from '../migration.ts';

/**
 * Batch evaluations of a run: one row per evaluation (its settings and results as JSON: the
 * schemas live in contract/eval.ts), one per prompt with both variants' answers and the vote.
 * They go with their run.
 */
export const migration: Migration = {
  version: 6,
  name: 'eval',
  up(db) {
    db.exec(`
      CREATE TABLE eval_sets (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        settings TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT,
        revealed INTEGER NOT NULL DEFAULT 0,
        perplexity TEXT,
        general TEXT,
        created_at TEXT NOT NULL
      );
      CREATE TABLE eval_items (
        set_id TEXT NOT NULL REFERENCES eval_sets(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        messages TEXT NOT NULL,
        reference TEXT,
        answer_a TEXT,
        answer_b TEXT,
        vote TEXT,
        PRIMARY KEY (set_id, idx)
      );
    `);
  },
};
