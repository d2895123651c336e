/**
 * Compare conversations in SQLite (migration 005): a conversation's columns and settings, its
 * user turns and each column's answer to each turn.
 */
import { randomUUID } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import {
  OvernightError,
  compareColumnSchema,
  samplingSchema,
  type CompareAnswer,
  type CompareColumn,
  type CompareTurn,
  type Sampling,
} from '../../contract/index.ts';
import { z } from 'zod';

export type ChatDevice = 'auto' | 'gpu' | 'cpu';

export interface StoredConversation {
  id: string;
  title: string;
  modelId: string;
  columns: CompareColumn[];
  systemPrompt: string;
  sampling: Sampling;
  device: ChatDevice;
  createdAt: string;
  updatedAt: string;
  turnList: CompareTurn[];
}

interface ConvRow {
  id: string;
  title: string;
  model_id: string;
  columns: string;
  system_prompt: string;
  sampling: string;
  device: string;
  created_at: string;
  updated_at: string;
}

interface AnswerRow {
  turn: number;
  col: number;
  content: string;
  tokens: number;
  tokens_per_second: number;
  finish: CompareAnswer['finish'];
  error: string | null;
}

const columnsSchema = z.array(compareColumnSchema);

export class ConversationStore {
  constructor(private readonly db: Database) {}

  create(c: Omit<StoredConversation, 'id' | 'createdAt' | 'updatedAt' | 'turnList'>): string {
    const id = randomUUID();
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO compare_conversations
          (id, title, model_id, columns, system_prompt, sampling, device, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        c.title,
        c.modelId,
        JSON.stringify(c.columns),
        c.systemPrompt,
        JSON.stringify(c.sampling),
        c.device,
        now,
        now,
      );
    return id;
  }

  private row(id: string): ConvRow | undefined {
    return this.db.prepare('SELECT * FROM compare_conversations WHERE id = ?').get(id) as
      ConvRow | undefined;
  }

  private fromRow(r: ConvRow, turnList: CompareTurn[]): StoredConversation {
    return {
      id: r.id,
      title: r.title,
      modelId: r.model_id,
      columns: columnsSchema.parse(JSON.parse(r.columns)),
      systemPrompt: r.system_prompt,
      sampling: samplingSchema.parse(JSON.parse(r.sampling)),
      device: r.device as ChatDevice,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      turnList,
    };
  }

  require(id: string): StoredConversation {
    const r = this.row(id);
    if (!r) throw new OvernightError('NOT_FOUND', `no conversation with id "${id}"`);
    return this.fromRow(r, this.turns(id));
  }

  list(): (StoredConversation & { turns: number })[] {
    const rows = this.db
      .prepare(
        `SELECT c.*, (SELECT COUNT(*) FROM compare_turns t WHERE t.conversation_id = c.id) AS n
         FROM compare_conversations c ORDER BY c.updated_at DESC, c.created_at DESC`,
      )
      .all() as (ConvRow & { n: number })[];
    return rows.map((r) => ({ ...this.fromRow(r, []), turns: r.n }));
  }

  turns(id: string): CompareTurn[] {
    const turns = this.db
      .prepare('SELECT turn, user FROM compare_turns WHERE conversation_id = ? ORDER BY turn')
      .all(id) as { turn: number; user: string }[];
    const answers = this.db
      .prepare('SELECT * FROM compare_answers WHERE conversation_id = ? ORDER BY turn, col')
      .all(id) as AnswerRow[];
    return turns.map((t) => ({
      index: t.turn,
      user: t.user,
      answers: answers
        .filter((a) => a.turn === t.turn)
        .map((a) => ({
          column: a.col,
          content: a.content,
          tokens: a.tokens,
          tokensPerSecond: a.tokens_per_second,
          finish: a.finish,
          error: a.error,
        })),
    }));
  }

  private touch(id: string): void {
    this.db
      .prepare('UPDATE compare_conversations SET updated_at = ? WHERE id = ?')
      .run(new Date().toISOString(), id);
  }

  update(
    id: string,
    patch: { title?: string; systemPrompt?: string; sampling?: Sampling; device?: ChatDevice },
  ): void {
    const cur = this.require(id);
    this.db
      .prepare(
        'UPDATE compare_conversations SET title = ?, system_prompt = ?, sampling = ?, device = ?, updated_at = ? WHERE id = ?',
      )
      .run(
        patch.title ?? cur.title,
        patch.systemPrompt ?? cur.systemPrompt,
        JSON.stringify(patch.sampling ?? cur.sampling),
        patch.device ?? cur.device,
        new Date().toISOString(),
        id,
      );
  }

  /** Appends a user turn; returns its index. */
  addTurn(id: string, user: string): number {
    const tx = this.db.transaction(() => {
      const r = this.db
        .prepare(
          'SELECT COALESCE(MAX(turn) + 1, 0) AS n FROM compare_turns WHERE conversation_id = ?',
        )
        .get(id) as { n: number };
      this.db
        .prepare('INSERT INTO compare_turns (conversation_id, turn, user) VALUES (?, ?, ?)')
        .run(id, r.n, user);
      this.touch(id);
      return r.n;
    });
    return tx();
  }

  setUser(id: string, turn: number, user: string): void {
    this.db
      .prepare('UPDATE compare_turns SET user = ? WHERE conversation_id = ? AND turn = ?')
      .run(user, id, turn);
    this.touch(id);
  }

  /** Removes the answers of one turn (regenerate, edit). */
  clearAnswers(id: string, turn: number): void {
    this.db
      .prepare('DELETE FROM compare_answers WHERE conversation_id = ? AND turn = ?')
      .run(id, turn);
  }

  putAnswer(id: string, turn: number, a: CompareAnswer): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO compare_answers
          (conversation_id, turn, col, content, tokens, tokens_per_second, finish, error)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(id, turn, a.column, a.content, a.tokens, a.tokensPerSecond, a.finish, a.error);
    this.touch(id);
  }

  clear(id: string): void {
    this.db.prepare('DELETE FROM compare_turns WHERE conversation_id = ?').run(id);
    this.touch(id);
  }

  delete(id: string): boolean {
    return this.db.prepare('DELETE FROM compare_conversations WHERE id = ?').run(id).changes > 0;
  }
}
