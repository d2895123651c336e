/** Reading back a stored dataset: `<dataDir>/datasets/<hash>.jsonl`, one normalised record a line. */
import { readLines } from './lines.ts';
import type { NormalizedRecord } from './types.ts';

export async function* readStoredRecords(
  path: string,
  signal?: AbortSignal,
): AsyncGenerator<NormalizedRecord> {
  for await (const l of readLines(path, { maxLineBytes: 1 << 30, signal })) {
    if (!('text' in l))
      throw new Error(`${path}:${l.line}: stored dataset is corrupt (${l.error})`);
    if (l.text === '') continue;
    yield JSON.parse(l.text) as NormalizedRecord;
  }
}

export async function loadStoredRecords(
  path: string,
  limit = Infinity,
): Promise<NormalizedRecord[]> {
  const out: NormalizedRecord[] = [];
  for await (const r of readStoredRecords(path)) {
    if (out.length >= limit) break;
    out.push(r);
  }
  return out;
}
