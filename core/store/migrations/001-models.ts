import type { Migration } from '../migration.ts';

/**
 * The model library. Key facts are columns (for lookups and uniqueness); the rest of the
 * metadata read from the GGUF header is one JSON document (`info`), shaped like the contract's
 * ModelInfo minus id/name/path/addedAt/fileExists.
 */
export const migration: Migration = {
  version: 1,
  name: 'models',
  up(db) {
    db.exec(`
      CREATE TABLE models (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        file_size   INTEGER NOT NULL,
        info        TEXT NOT NULL,
        added_at    TEXT NOT NULL
      );
      CREATE INDEX models_fingerprint ON models (fingerprint);
    `);
  },
};
