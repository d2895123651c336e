import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { OvernightError } from '../../contract/index.ts';
import { DB_FILE_NAME, openStore } from './db.ts';
import type { Migration } from './migration.ts';
import { migrations } from './migrations/index.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A hypothetical next migration, to test upgrading a file written by the previous version. */
const addNotes: Migration = {
  version: migrations.length + 1,
  name: 'test-notes',
  up(db) {
    db.exec(`ALTER TABLE models ADD COLUMN notes TEXT NOT NULL DEFAULT 'none'`);
  },
};

function insertModel(db: Database.Database, id: string): void {
  db.prepare(
    `INSERT INTO models (id, name, path, fingerprint, file_size, info, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
  ).run(id, 'tiny', `/models/${id}.gguf`, 'abc', 123, '{}', '2025-01-01T00:00:00.000Z');
}

describe('store', () => {
  it('creates a fresh database with WAL, foreign keys and every migration recorded', () => {
    const store = openStore(dir);
    try {
      assert.equal(store.version, migrations.length);
      assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(store.db.pragma('foreign_keys', { simple: true }), 1);
      const rows = store.db
        .prepare('SELECT version, name FROM schema_migrations ORDER BY version')
        .all();
      assert.deepEqual(
        rows,
        migrations.map((m) => ({ version: m.version, name: m.name })),
      );
    } finally {
      store.close();
    }
  });

  it('upgrades a version-1 file in place, keeping its data', () => {
    const v1 = openStore(dir, migrations.slice(0, 1));
    assert.equal(v1.version, 1);
    insertModel(v1.db, 'm1');
    v1.close();

    const current = openStore(dir, [...migrations, addNotes]);
    try {
      assert.equal(current.version, migrations.length + 1);
      const row = current.db.prepare('SELECT id, name, file_size, notes FROM models').get();
      assert.deepEqual(row, { id: 'm1', name: 'tiny', file_size: 123, notes: 'none' });
    } finally {
      current.close();
    }
  });

  it('opening twice is a no-op the second time', () => {
    openStore(dir).close();
    const again = openStore(dir);
    try {
      const n = again.db.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as {
        n: number;
      };
      assert.equal(n.n, migrations.length);
    } finally {
      again.close();
    }
  });

  it('a failing migration leaves nothing half-applied', () => {
    openStore(dir).close();
    const broken: Migration = {
      version: migrations.length + 1,
      name: 'broken',
      up(db) {
        db.exec('CREATE TABLE half (x INTEGER)');
        db.exec('THIS IS NOT SQL');
      },
    };
    assert.throws(
      () => openStore(dir, [...migrations, broken]),
      (err: unknown) =>
        err instanceof OvernightError && /migration \d+ \(broken\) failed/.test(err.message),
    );
    const db = new Database(join(dir, DB_FILE_NAME));
    try {
      const t = db.prepare(`SELECT name FROM sqlite_master WHERE name = 'half'`).get();
      assert.equal(t, undefined);
      const v = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as {
        v: number;
      };
      assert.equal(v.v, migrations.length);
    } finally {
      db.close();
    }
  });

  it('refuses a file written by a newer Overnight, with a clear message', () => {
    openStore(dir, [...migrations, addNotes]).close();
    assert.throws(
      () => openStore(dir),
      (err: unknown) =>
        err instanceof OvernightError &&
        err.code === 'UNSUPPORTED' &&
        err.message.includes(DB_FILE_NAME) &&
        err.message.includes(`schema version ${migrations.length + 1}`) &&
        err.message.includes('newer'),
    );
  });

  it('refuses a file that is not a database', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, DB_FILE_NAME), 'hello, this is not sqlite at all'.repeat(100));
    assert.throws(
      () => openStore(dir),
      (err: unknown) =>
        err instanceof OvernightError &&
        err.code === 'INVALID_FILE' &&
        err.message.includes(DB_FILE_NAME),
    );
  });
});
