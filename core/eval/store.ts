/** Batch evaluations in SQLite (migration 006). */
import { randomUUID } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import { z } from 'zod';
import {
  OvernightError,
  evalStates,
  perplexitySchema,
  samplingSchema,
  variantSchema,
  voteChoices,
  type VoteChoice,
} from '../../contract/index.ts';
import type { Message } from '../datasets/types.ts';

export const evalSettingsSchema = z.object({
  modelId: z.string(),
  source: z.enum(['validation', 'file']),
  file: z.string().nullable(),
  variants: z.tuple([variantSchema, variantSchema]),
  labels: z.tuple([z.string(), z.string()]),
  sampling: samplingSchema,
  orderSeed: z.number().int().nonnegative(),
  device: z.enum(['auto', 'gpu', 'cpu']),
});
export type EvalSettings = z.infer<typeof evalSettingsSchema>;

const generalSchema = perplexitySchema.extend({ change: z.number() });

export interface StoredSet {
  id: string;
  runId: string;
  settings: EvalSettings;
  state: (typeof evalStates)[number];
  error: string | null;
  revealed: boolean;
  perplexity: z.infer<typeof perplexitySchema> | null;
  general: z.infer<typeof generalSchema> | null;
  createdAt: string;
}

export interface StoredItem {
  index: number;
  messages: Message[];
  reference: string | null;
  answers: [string | null, string | null];
  vote: VoteChoice | null;
}

interface SetRow {
  id: string;
  run_id: string;
  settings: string;
  state: string;
  error: string | null;
  revealed: number;
  perplexity: string | null;
  general: string | null;
  created_at: string;
}

interface ItemRow {
  idx: number;
  messages: string;
  reference: string | null;
  answer_a: string | null;
  answer_b: string | null;
  vote: string | null;
}

export class EvalStore {
  constructor(private readonly db: Database) {}

  create(
    runId: string,
    settings: EvalSettings,
    items: { messages: Message[]; reference: string | null }[],
  ): string {
    const id = randomUUID();
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO eval_sets (id, run_id, settings, state, created_at) VALUES (?, ?, ?, 'answering', ?)`,
        )
        .run(id, runId, JSON.stringify(settings), new Date().toISOString());
      const ins = this.db.prepare(
        'INSERT INTO eval_items (set_id, idx, messages, reference) VALUES (?, ?, ?, ?)',
      );
      items.forEach((it, i) => ins.run(id, i, JSON.stringify(it.messages), it.reference));
    })();
    return id;
  }

  private fromRow(r: SetRow): StoredSet {
    return {
      id: r.id,
      runId: r.run_id,
      settings: evalSettingsSchema.parse(JSON.parse(r.settings)),
      state: z.enum(evalStates).parse(r.state),
      error: r.error,
      revealed: r.revealed === 1,
      perplexity: r.perplexity ? perplexitySchema.parse(JSON.parse(r.perplexity)) : null,
      general: r.general ? generalSchema.parse(JSON.parse(r.general)) : null,
      createdAt: r.created_at,
    };
  }

  require(id: string): StoredSet {
    const r = this.db.prepare('SELECT * FROM eval_sets WHERE id = ?').get(id) as SetRow | undefined;
    if (!r) throw new OvernightError('NOT_FOUND', `no evaluation with id "${id}"`);
    return this.fromRow(r);
  }

  list(runId?: string): StoredSet[] {
    const rows = (
      runId
        ? this.db
            .prepare('SELECT * FROM eval_sets WHERE run_id = ? ORDER BY created_at DESC')
            .all(runId)
        : this.db.prepare('SELECT * FROM eval_sets ORDER BY created_at DESC').all()
    ) as SetRow[];
    return rows.map((r) => this.fromRow(r));
  }

  /** Sets left 'answering' by an engine that stopped become 'paused' (resume continues them). */
  pauseInterrupted(): void {
    this.db.prepare(`UPDATE eval_sets SET state = 'paused' WHERE state = 'answering'`).run();
  }

  items(id: string): StoredItem[] {
    const rows = this.db
      .prepare('SELECT * FROM eval_items WHERE set_id = ? ORDER BY idx')
      .all(id) as ItemRow[];
    return rows.map((r) => ({
      index: r.idx,
      messages: JSON.parse(r.messages) as Message[],
      reference: r.reference,
      answers: [r.answer_a, r.answer_b],
      vote: r.vote === null ? null : z.enum(voteChoices).parse(r.vote),
    }));
  }

  setState(id: string, state: StoredSet['state'], error: string | null = null): void {
    this.db.prepare('UPDATE eval_sets SET state = ?, error = ? WHERE id = ?').run(state, error, id);
  }

  setAnswer(id: string, index: number, variant: 0 | 1, text: string): void {
    this.db
      .prepare(
        `UPDATE eval_items SET ${variant === 0 ? 'answer_a' : 'answer_b'} = ? WHERE set_id = ? AND idx = ?`,
      )
      .run(text, id, index);
  }

  vote(id: string, index: number, vote: VoteChoice): void {
    const r = this.db
      .prepare('UPDATE eval_items SET vote = ? WHERE set_id = ? AND idx = ?')
      .run(vote, id, index);
    if (r.changes === 0)
      throw new OvernightError('NOT_FOUND', `the evaluation has no item ${index}`);
  }

  reveal(id: string): void {
    this.db.prepare('UPDATE eval_sets SET revealed = 1 WHERE id = ?').run(id);
  }

  setPerplexity(id: string, perplexity: unknown, general: unknown): void {
    this.db
      .prepare('UPDATE eval_sets SET perplexity = ?, general = ? WHERE id = ?')
      .run(
        perplexity === null ? null : JSON.stringify(perplexity),
        general === null ? null : JSON.stringify(general),
        id,
      );
  }

  delete(id: string): boolean {
    return this.db.prepare('DELETE FROM eval_sets WHERE id = ?').run(id).changes > 0;
  }
}
