import type { Migration } from '../migration.ts';

/**
 * Compare conversations: one row per conversation (model, columns, system prompt, sampling),
 * one per user turn, one per column's answer to a turn. Columns and sampling are JSON (their
 * schemas live in contract/compare.ts). Turns and answers go with their conversation.
 */
export const migration: Migration = {
  version: 5,
  name: 'compare',
  up(db) {
    db.exec(`
      CREATE TABLE compare_conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        model_id TEXT NOT NULL,
        columns TEXT NOT NULL,
        system_prompt TEXT NOT NULL,
        sampling TEXT NOT NULL,
        device TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE compare_turns (
        conversation_id TEXT NOT NULL REFERENCES compare_conversations(id) ON DELETE CASCADE,
        turn INTEGER NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (conversation_id, turn)
      );
      CREATE TABLE compare_answers (
        conversation_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        col INTEGER NOT NULL,
        content TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        tokens_per_second REAL NOT NULL,
        finish TEXT,
        error TEXT,
        PRIMARY KEY (conversation_id, turn, col),
        FOREIGN KEY (conversation_id, turn) REFERENCES compare_turns(conversation_id, turn)
          ON DELETE CASCADE
      );
    `);
  },
};
