/**
 * The engine's SQLite store: `<dataDir>/overnight.db`, WAL, foreign keys on, a busy timeout,
 * and numbered migrations recorded in `schema_migrations`. A file written by a newer
 * Overnight (a higher schema version than this code knows) is refused, untouched.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { OvernightError } from '../../contract/index.ts';
import type { Migration } from './migration.ts';
import { migrations as allMigrations } from './migrations/index.ts';

export const DB_FILE_NAME = 'overnight.db';

export interface Store {
  db: Database.Database;
  file: string;
  /** Schema version after opening. */
  version: number;
  close(): void;
}

export function openStore(
  dataDir: string,
  migrations: readonly Migration[] = allMigrations,
): Store {
  mkdirSync(dataDir, { recursive: true });
  return openDatabase(join(dataDir, DB_FILE_NAME), migrations);
}

export function openDatabase(
  file: string,
  migrations: readonly Migration[] = allMigrations,
): Store {
  checkMigrationList(migrations);
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw new OvernightError(
      'INVALID_FILE',
      `cannot open the database ${file}: ${(err as Error).message}`,
    );
  }
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    const version = migrate(db, file, migrations);
    return {
      db,
      file,
      version,
      close: () => {
        if (db.open) db.close();
      },
    };
  } catch (err) {
    db.close();
    if (err instanceof OvernightError) throw err;
    const msg = (err as Error).message;
    if (/file is not a database|malformed/i.test(msg)) {
      throw new OvernightError('INVALID_FILE', `${file} is not an Overnight database (${msg})`);
    }
    throw err;
  }
}

function checkMigrationList(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(
        `migration "${m.name}" has version ${m.version}; expected ${i + 1} (versions are 1, 2, 3, ... in order)`,
      );
    }
  });
}

/** Applies the missing migrations in order; returns the resulting version. */
function migrate(db: Database.Database, file: string, migrations: readonly Migration[]): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
  )`);
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as {
    v: number | null;
  };
  const current = row.v ?? 0;
  const known = migrations.length;
  if (current > known) {
    throw new OvernightError(
      'UNSUPPORTED',
      `${file} has schema version ${current}, newer than this version of Overnight knows (${known}); ` +
        `update Overnight, or use another --data-dir`,
    );
  }
  const record = db.prepare(
    'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
  );
  for (const m of migrations.slice(current)) {
    const apply = db.transaction(() => {
      m.up(db);
      record.run(m.version, m.name, new Date().toISOString());
    });
    try {
      apply.immediate();
    } catch (err) {
      throw new OvernightError(
        'INTERNAL',
        `migration ${m.version} (${m.name}) failed on ${file}: ${(err as Error).message}`,
      );
    }
  }
  return Math.max(current, known);
}
