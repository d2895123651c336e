/**
 * Prompt sets for a batch evaluation: a file (JSONL: {"prompt": "...", "reference": "..."} per
 * line; CSV/TSV with a header naming a `prompt` column and optionally `reference`), or a run's
 * validation records (each chat record asked up to its last reply, which is the reference).
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { OvernightError } from '../../contract/index.ts';
import { readCsv } from '../datasets/csv.ts';
import { readLines } from '../datasets/lines.ts';
import type { Message, NormalizedRecord } from '../datasets/types.ts';

export interface PromptItem {
  /** The conversation the variants answer (ends with a user turn). */
  messages: Message[];
  reference: string | null;
}

function bad(path: string, line: number, msg: string): OvernightError {
  return new OvernightError('INVALID_FILE', `${path}:${line}: ${msg}`);
}

export async function readPromptFile(path: string, limit: number): Promise<PromptItem[]> {
  if (!existsSync(path)) throw new OvernightError('FILE_NOT_FOUND', `${path} does not exist`);
  const ext = extname(path).toLowerCase();
  const out: PromptItem[] = [];
  const add = (prompt: unknown, reference: unknown, line: number) => {
    if (typeof prompt !== 'string' || prompt.trim() === '')
      throw bad(path, line, 'expected a non-empty "prompt"');
    if (reference !== undefined && reference !== null && typeof reference !== 'string')
      throw bad(path, line, '"reference" must be a string');
    out.push({
      messages: [{ role: 'user', content: prompt }],
      reference: typeof reference === 'string' && reference !== '' ? reference : null,
    });
  };
  if (ext === '.jsonl' || ext === '.json') {
    for await (const l of readLines(path, { maxLineBytes: 1 << 24 })) {
      if ('error' in l) throw bad(path, l.line, `${l.error}`);
      if (l.text.trim() === '') continue;
      let v: unknown;
      try {
        v = JSON.parse(l.text);
      } catch (e) {
        throw bad(path, l.line, `not JSON: ${(e as Error).message}`);
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        throw bad(path, l.line, 'expected an object like {"prompt": "...", "reference": "..."}');
      const o = v as Record<string, unknown>;
      add(o.prompt, o.reference, l.line);
      if (out.length >= limit) break;
    }
  } else if (ext === '.csv' || ext === '.tsv') {
    for await (const item of readCsv(path, {
      delimiter: ext === '.tsv' ? '\t' : ',',
      maxRecordBytes: 1 << 24,
    })) {
      if ('error' in item)
        throw bad(path, item.line, `${item.error}: expected ${item.expected}, found ${item.found}`);
      if (!('prompt' in item.value))
        throw bad(path, item.line, 'the header has no "prompt" column');
      add(item.value.prompt, item.value.reference, item.line);
      if (out.length >= limit) break;
    }
  } else {
    throw new OvernightError(
      'INVALID_FILE',
      `${path}: a prompt set is a .jsonl or .csv/.tsv file (got "${ext || 'no extension'}")`,
    );
  }
  if (out.length === 0) throw new OvernightError('INVALID_FILE', `${path} has no prompts`);
  return out;
}

/** Chat records asked up to their last reply; text records have no prompt and are left out. */
export function validationPrompts(
  records: readonly NormalizedRecord[],
  limit: number,
): PromptItem[] {
  const out: PromptItem[] = [];
  for (const r of records) {
    if (!('messages' in r)) continue;
    const last = r.messages.findLastIndex((m) => m.role === 'assistant');
    if (last < 1) continue;
    out.push({ messages: r.messages.slice(0, last), reference: r.messages[last]!.content });
    if (out.length >= limit) break;
  }
  return out;
}
