import type { Migration } from '../migration.ts';

/**
 * Imported datasets. The records themselves live in `<dataDir>/datasets/<hash>.jsonl`
 * (content-addressed, normalised); a row names the source, the detected / chosen format and
 * mapping (JSON), counts, and the import's record stats and problem summary (JSON documents
 * shaped like the contract's DatasetInfo fields). Two rows never share a hash: importing the
 * same records again returns the existing row.
 */
export const migration: Migration = {
  version: 3,
  name: 'datasets',
  up(db) {
    db.exec(`
      CREATE TABLE datasets (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        source_name  TEXT NOT NULL,
        source_path  TEXT NOT NULL,
        source_size  INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        format       TEXT NOT NULL,
        mapping      TEXT NOT NULL,
        hash         TEXT NOT NULL UNIQUE,
        records      INTEGER NOT NULL,
        stored_bytes INTEGER NOT NULL,
        stats        TEXT NOT NULL,
        counts       TEXT NOT NULL,
        problems     TEXT NOT NULL,
        created_at   TEXT NOT NULL
      );
    `);
  },
};
