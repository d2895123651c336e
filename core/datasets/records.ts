/** Reading back a stored dataset: `<dataDir>/datasets/<hash>.jsonl`, one normalised record a line. */
import { createReadStream } from 'node:fs';
import { readLines } from './lines.ts';
import type { NormalizedRecord } from './types.ts';

export async function* readStoredRecords(
  path: string,
  signal?: AbortSignal,
  startByte = 0,
): AsyncGenerator<NormalizedRecord> {
  for await (const l of readLines(path, { maxLineBytes: 1 << 30, signal, start: startByte })) {
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

/**
 * Byte offset of every record's line in a stored dataset (one scan for LF bytes; 8 bytes a
 * record), so the record at index i is read without reading the ones before it.
 */
export async function recordOffsets(path: string): Promise<Float64Array> {
  let offs = new Float64Array(1024);
  let n = 0;
  let pos = 0;
  let atLineStart = true;
  for await (const chunkAny of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const chunk = chunkAny as Buffer;
    let i = 0;
    while (i < chunk.length) {
      if (atLineStart) {
        if (n === offs.length) {
          const bigger = new Float64Array(offs.length * 2);
          bigger.set(offs);
          offs = bigger;
        }
        offs[n++] = pos + i;
        atLineStart = false;
      }
      const nl = chunk.indexOf(0x0a, i);
      if (nl < 0) break;
      i = nl + 1;
      atLineStart = true;
    }
    pos += chunk.length;
  }
  return offs.slice(0, n);
}
