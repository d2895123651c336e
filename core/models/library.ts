/**
 * The model library: rows in `models` (see store/migrations/001-models.ts) + handlers for the
 * `models.*` methods.
 *
 * Duplicates (decided here, documented in docs/engine.md):
 *  - same path, same content      → returns the existing entry (add is idempotent);
 *  - same path, changed content   → CONFLICT (remove it first, then add again);
 *  - same content at another path → if the old path no longer exists, the entry is relinked to
 *    the new path (the file was moved) and returned; otherwise CONFLICT naming the entry.
 * Removing never touches the file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { OvernightError, type ModelInfo } from '../../contract/index.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import type { Store } from '../store/db.ts';
import { readModelFile, type ModelFileInfo } from './gguf-info.ts';

interface ModelRow {
  id: string;
  name: string;
  path: string;
  fingerprint: string;
  file_size: number;
  info: string;
  added_at: string;
}

/** The JSON document in `models.info`. */
type StoredInfo = Omit<
  ModelInfo,
  'id' | 'name' | 'path' | 'fingerprint' | 'fileSize' | 'addedAt' | 'fileExists'
>;

function toModelInfo(row: ModelRow): ModelInfo {
  const info = JSON.parse(row.info) as StoredInfo;
  return {
    id: row.id,
    name: row.name,
    path: row.path,
    ...info,
    fingerprint: row.fingerprint,
    fileSize: row.file_size,
    addedAt: row.added_at,
    fileExists: existsSync(row.path),
  };
}

function toStoredInfo(f: ModelFileInfo): StoredInfo {
  return {
    architecture: f.architecture,
    parameterCount: f.parameterCount,
    fileType: f.fileType,
    tensorTypes: f.tensorTypes,
    contextLength: f.contextLength,
    layers: f.layers,
    embeddingSize: f.embeddingSize,
    vocabSize: f.vocabSize,
    chatTemplate: f.chatTemplate,
    trainable: f.trainable,
  };
}

export class ModelLibrary {
  constructor(
    private readonly store: Store,
    private readonly events: EventBus,
  ) {}

  list(): ModelInfo[] {
    const rows = this.store.db
      .prepare('SELECT * FROM models ORDER BY added_at, id')
      .all() as ModelRow[];
    return rows.map(toModelInfo);
  }

  get(id: string): ModelInfo | null {
    const row = this.store.db.prepare('SELECT * FROM models WHERE id = ?').get(id) as
      ModelRow | undefined;
    return row ? toModelInfo(row) : null;
  }

  /** Like get, but NOT_FOUND for an unknown id (for other domains that take a model id). */
  require(id: string): ModelInfo {
    const m = this.get(id);
    if (!m) throw new OvernightError('NOT_FOUND', `no model with id "${id}"`);
    return m;
  }

  async add(rawPath: string, name?: string): Promise<ModelInfo> {
    const path = resolve(rawPath);
    const file = await readModelFile(path);
    if (file.architectureRefusal) {
      throw new OvernightError('UNSUPPORTED', `${path}: ${file.architectureRefusal}`);
    }
    const db = this.store.db;
    const byPath = db.prepare('SELECT * FROM models WHERE path = ?').get(path) as
      ModelRow | undefined;
    if (byPath) {
      if (byPath.fingerprint === file.fingerprint) return toModelInfo(byPath);
      throw new OvernightError(
        'CONFLICT',
        `${path} is already in the library as "${byPath.name}" (${byPath.id}), but its content has changed ` +
          `since it was added; remove that entry first to add the file again`,
      );
    }
    const sameContent = db
      .prepare('SELECT * FROM models WHERE fingerprint = ? ORDER BY added_at')
      .all(file.fingerprint) as ModelRow[];
    const present = sameContent.find((r) => existsSync(r.path));
    if (present) {
      throw new OvernightError(
        'CONFLICT',
        `${path} has the same content as "${present.name}" (${present.id}) at ${present.path}, already in the library`,
      );
    }
    const moved = sameContent[0];
    if (moved) {
      db.prepare('UPDATE models SET path = ? WHERE id = ?').run(path, moved.id);
      this.events.emit('models.changed', { ids: [moved.id] });
      return this.require(moved.id);
    }

    const id = randomBytes(6).toString('hex');
    const displayName = name ?? (basename(path).replace(/\.gguf$/i, '') || file.generalName || id);
    db.prepare(
      `INSERT INTO models (id, name, path, fingerprint, file_size, info, added_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      id,
      displayName,
      path,
      file.fingerprint,
      file.fileSize,
      JSON.stringify(toStoredInfo(file)),
      new Date().toISOString(),
    );
    this.events.emit('models.changed', { ids: [id] });
    return this.require(id);
  }

  remove(id: string): boolean {
    const r = this.store.db.prepare('DELETE FROM models WHERE id = ?').run(id);
    if (r.changes > 0) this.events.emit('models.changed', { ids: [id] });
    return r.changes > 0;
  }
}

export function modelsHandlers(
  library: ModelLibrary,
): Handlers<'models.add' | 'models.list' | 'models.show' | 'models.remove'> {
  return {
    'models.add': ({ path, name }) => library.add(path, name),
    'models.list': () => library.list(),
    'models.show': ({ id }) => library.require(id),
    // Idempotent: an unknown id answers { removed: false } (the CLI turns that into an error).
    'models.remove': ({ id }) => ({ removed: library.remove(id) }),
  };
}
