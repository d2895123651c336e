import type { Migration } from '../migration.ts';

/**
 * Training runs and what they produce. Step-keyed tables have PRIMARY KEY (run_id, step):
 * a step can be stored once only, so a trainer that resumes from a checkpoint and repeats
 * steps replaces them (the store writes them with INSERT OR REPLACE on purpose, after deleting
 * the steps past the checkpoint it resumes from). `config`, `overrides` and `estimate` are JSON
 * documents shaped like the contract's RunConfig, overrides and RunEstimate.
 * `queue_seq` orders the queue (first in, first out; a resumed run goes to the back).
 */
export const migration: Migration = {
  version: 2,
  name: 'runs',
  up(db) {
    db.exec(`
      CREATE TABLE runs (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        notes         TEXT NOT NULL DEFAULT '',
        state         TEXT NOT NULL CHECK (state IN ('queued','running','paused','completed','failed','cancelled','interrupted')),
        state_reason  TEXT,
        config        TEXT NOT NULL,
        model_id      TEXT NOT NULL,
        dataset_id    TEXT NOT NULL,
        folder        TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        started_at    TEXT,
        finished_at   TEXT,
        step          INTEGER NOT NULL DEFAULT 0,
        total_steps   INTEGER NOT NULL DEFAULT 0,
        tokens        REAL NOT NULL DEFAULT 0,
        best_val_loss REAL,
        best_step     INTEGER,
        retries       INTEGER NOT NULL DEFAULT 0,
        overrides     TEXT NOT NULL DEFAULT '{}',
        adapter_path  TEXT,
        estimate      TEXT,
        queue_seq     INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX runs_state ON runs (state, queue_seq);

      CREATE TABLE run_metrics (
        run_id            TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step              INTEGER NOT NULL,
        epoch             REAL NOT NULL,
        loss              REAL NOT NULL,
        lr                REAL NOT NULL,
        tokens_per_second REAL NOT NULL,
        tokens            REAL NOT NULL,
        memory_bytes      REAL,
        time              INTEGER NOT NULL,
        PRIMARY KEY (run_id, step)
      ) WITHOUT ROWID;

      CREATE TABLE run_evals (
        run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step     INTEGER NOT NULL,
        val_loss REAL NOT NULL,
        time     INTEGER NOT NULL,
        PRIMARY KEY (run_id, step)
      ) WITHOUT ROWID;

      CREATE TABLE run_probes (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step   INTEGER NOT NULL,
        idx    INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        output TEXT NOT NULL,
        PRIMARY KEY (run_id, step, idx)
      ) WITHOUT ROWID;

      CREATE TABLE run_checkpoints (
        run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step       INTEGER NOT NULL,
        path       TEXT NOT NULL,
        val_loss   REAL,
        kind       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, step)
      ) WITHOUT ROWID;

      CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
    `);
  },
};
