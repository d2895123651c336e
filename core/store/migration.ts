import type { Database } from 'better-sqlite3';

/**
 * One schema step. Files are `migrations/NNN-name.ts`; `version` is NNN and never changes once
 * released. `up` runs inside a transaction together with its `schema_migrations` row, so it
 * either applies fully or not at all. (SQLite cannot toggle `foreign_keys` inside a
 * transaction: a migration that rebuilds a table must keep references valid as it goes.)
 */
export interface Migration {
  version: number;
  name: string;
  up(db: Database): void;
}
