/**
 * RFC 4180 CSV / TSV reader over a byte stream, in bounded memory.
 *
 * Works on bytes (every syntax character is ASCII, so UTF-8 text passes through untouched):
 * quoted fields may hold delimiters, `""` escapes and embedded newlines; CRLF and LF both end
 * a record. The first record is the header. Each later record becomes an object keyed by the
 * header; a record with a different number of fields is reported (ragged row), never padded.
 * Fields are decoded with a fatal UTF-8 decoder, so invalid bytes are reported by line.
 *
 * Memory: one read chunk plus the bytes of the current record (capped by `maxRecordBytes`).
 */
import { createReadStream } from 'node:fs';
import { decodeUtf8, fileChunks } from './lines.ts';

export type CsvItem =
  | { line: number; value: Record<string, string> }
  | {
      line: number;
      error: 'ragged_row' | 'invalid_utf8' | 'line_too_long' | 'csv_quote' | 'empty_file';
      expected: string;
      found: string;
    };

export interface CsvOptions {
  delimiter: ',' | '\t';
  maxRecordBytes: number;
  onBytes?: (bytesRead: number) => void;
  signal?: AbortSignal;
  highWaterMark?: number;
}

const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;

const enum S {
  FieldStart,
  Unquoted,
  Quoted,
  QuoteInQuoted,
}

export async function* readCsv(path: string, opts: CsvOptions): AsyncGenerator<CsvItem> {
  const delim = opts.delimiter.charCodeAt(0);
  const stream = createReadStream(path, { highWaterMark: opts.highWaterMark ?? 1 << 20 });
  let buf = Buffer.allocUnsafe(4096);
  let len = 0;
  let fieldEnds: number[] = [];
  let state: S = S.FieldStart;
  let line = 1;
  let recordLine = 1;
  let oversize = false;
  let header: string[] | null = null;
  let bytesRead = 0;
  let quoteProblem: string | null = null;

  const push = (c: number) => {
    if (oversize) return;
    if (len >= opts.maxRecordBytes) {
      oversize = true;
      return;
    }
    if (len === buf.length) {
      const nb = Buffer.allocUnsafe(Math.min(buf.length * 2, opts.maxRecordBytes + 1));
      buf.copy(nb, 0, 0, len);
      buf = nb;
    }
    buf[len++] = c;
  };

  /** Turn the finished record into an item (or nothing, for a blank line). */
  const endRecord = (): CsvItem | null => {
    fieldEnds.push(len);
    const at = recordLine;
    const ends = fieldEnds;
    fieldEnds = [];
    const totalLen = len;
    len = 0;
    const qp = quoteProblem;
    quoteProblem = null;
    if (oversize) {
      oversize = false;
      return {
        line: at,
        error: 'line_too_long',
        expected: `a record of at most ${opts.maxRecordBytes} bytes`,
        found: 'a longer record',
      };
    }
    if (ends.length === 1 && totalLen === 0) return null; // blank line
    const fields: string[] = [];
    let start = 0;
    for (const end of ends) {
      const d = decodeUtf8(buf.subarray(start, end));
      if ('error' in d) {
        return {
          line: at,
          error: 'invalid_utf8',
          expected: 'UTF-8 text',
          found: `${d.error.replace(' of the line', ` of field ${fields.length + 1}`)}`,
        };
      }
      fields.push(d.text);
      start = end;
    }
    if (qp)
      return {
        line: at,
        error: 'csv_quote',
        expected: 'a delimiter or end of line after a closing quote',
        found: qp,
      };
    if (header === null) {
      header = fields;
      return null;
    }
    if (fields.length !== header.length) {
      return {
        line: at,
        error: 'ragged_row',
        expected: `${header.length} fields (as in the header)`,
        found: `${fields.length} fields`,
      };
    }
    const value: Record<string, string> = {};
    for (let k = 0; k < header.length; k++) value[header[k]!] = fields[k]!;
    return { line: at, value };
  };

  try {
    for await (const chunk of fileChunks(stream, opts.signal, (n) => (bytesRead += n))) {
      const out: CsvItem[] = [];
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i]!;
        switch (state) {
          case S.FieldStart:
          case S.Unquoted:
            if (c === delim) {
              fieldEnds.push(len);
              state = S.FieldStart;
            } else if (c === LF) {
              const item = endRecord();
              if (item) out.push(item);
              line++;
              recordLine = line;
              state = S.FieldStart;
            } else if (c === CR) {
              // dropped: CRLF ends the record at the LF; a lone CR is not a line end here
            } else if (c === QUOTE && state === S.FieldStart) {
              state = S.Quoted;
            } else {
              push(c);
              state = S.Unquoted;
            }
            break;
          case S.Quoted:
            if (c === QUOTE) state = S.QuoteInQuoted;
            else {
              if (c === LF) line++;
              push(c);
            }
            break;
          case S.QuoteInQuoted:
            if (c === QUOTE) {
              push(QUOTE);
              state = S.Quoted;
            } else if (c === delim) {
              fieldEnds.push(len);
              state = S.FieldStart;
            } else if (c === LF) {
              const item = endRecord();
              if (item) out.push(item);
              line++;
              recordLine = line;
              state = S.FieldStart;
            } else if (c === CR) {
              // CRLF after a closing quote
            } else {
              quoteProblem ??= `'${String.fromCharCode(c)}' after the closing quote of field ${fieldEnds.length + 1}`;
              push(c);
              state = S.Unquoted;
            }
            break;
        }
      }
      for (const item of out) yield item;
      opts.onBytes?.(bytesRead);
    }
    if (state === S.Quoted) {
      yield {
        line: recordLine,
        error: 'csv_quote',
        expected: 'a closing quote',
        found: 'end of file inside a quoted field',
      };
    } else if (len > 0 || fieldEnds.length > 0) {
      const item = endRecord();
      if (item) yield item;
    }
    if (header === null) {
      yield {
        line: 1,
        error: 'empty_file',
        expected: 'a header row and at least one record',
        found: 'no rows',
      };
    }
  } finally {
    stream.destroy();
  }
}
