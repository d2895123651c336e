/**
 * Streaming split of a JSON document into its records, in bounded memory.
 *
 * A `.json` file is either one top-level array of records (the usual export) or a sequence of
 * top-level values (a single object, or concatenated objects). This scanner does not build
 * the document: it walks the bytes once, tracking only string/escape state and bracket depth,
 * and cuts out each top-level element (array item, or top-level value) as a byte range. Each
 * element is then decoded (fatal UTF-8) and parsed with JSON.parse on its own.
 *
 * Memory: one read chunk plus the bytes of the current element, capped by `maxRecordBytes`
 * (an element past the cap is skipped and reported). So a 1 GB array of small records costs
 * what one record costs; one 1 GB record is refused, not loaded.
 */
import { createReadStream } from 'node:fs';
import { decodeUtf8, fileChunks } from './lines.ts';

export type JsonElement =
  | { line: number; value: unknown }
  | { line: number; error: 'invalid_json' | 'invalid_utf8' | 'line_too_long'; detail: string };

export interface JsonStreamOptions {
  maxRecordBytes: number;
  onBytes?: (bytesRead: number) => void;
  signal?: AbortSignal;
  highWaterMark?: number;
}

const enum B {
  LF = 0x0a,
  CR = 0x0d,
  SP = 0x20,
  TAB = 0x09,
  QUOTE = 0x22,
  BACKSLASH = 0x5c,
  COMMA = 0x2c,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
}

function isWs(c: number): boolean {
  return c === B.SP || c === B.LF || c === B.CR || c === B.TAB;
}

export async function* readJsonElements(
  path: string,
  opts: JsonStreamOptions,
): AsyncGenerator<JsonElement> {
  const stream = createReadStream(path, { highWaterMark: opts.highWaterMark ?? 1 << 20 });
  let line = 1;
  /** 'start': before the first value; 'array': inside the top-level array, between items;
   * 'stream': top level is a sequence of values; 'after': after the closing bracket. */
  let mode: 'start' | 'array' | 'stream' | 'after' = 'start';
  let inElement = false;
  let elementLine = 0;
  let depth = 0;
  let inString = false;
  let escape = false;
  let pieces: Buffer[] = [];
  let pieceBytes = 0;
  let oversize = false;
  let bytesRead = 0;
  let trailingJunkLine = 0;

  const emit = (buf: Buffer | null): JsonElement => {
    if (buf === null) {
      return {
        line: elementLine,
        error: 'line_too_long',
        detail: `a record of more than ${opts.maxRecordBytes} bytes`,
      };
    }
    const d = decodeUtf8(buf);
    if ('error' in d) return { line: elementLine, error: 'invalid_utf8', detail: d.error };
    try {
      return { line: elementLine, value: JSON.parse(d.text) };
    } catch (e) {
      return { line: elementLine, error: 'invalid_json', detail: (e as Error).message };
    }
  };

  try {
    for await (const chunk of fileChunks(stream, opts.signal, (n) => (bytesRead += n))) {
      let captureStart = inElement ? 0 : -1;
      const out: JsonElement[] = [];
      const closeElement = (endExclusive: number) => {
        if (!oversize) {
          const part = chunk.subarray(captureStart, endExclusive);
          const buf = pieces.length === 0 ? part : Buffer.concat([...pieces, part]);
          out.push(emit(buf));
        } else out.push(emit(null));
        pieces = [];
        pieceBytes = 0;
        oversize = false;
        inElement = false;
        captureStart = -1;
      };
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i]!;
        if (c === B.LF) line++;
        if (inElement) {
          if (inString) {
            if (escape) escape = false;
            else if (c === B.BACKSLASH) escape = true;
            else if (c === B.QUOTE) inString = false;
            continue;
          }
          if (c === B.QUOTE) inString = true;
          else if (c === B.LBRACE || c === B.LBRACKET) depth++;
          else if (c === B.RBRACE || c === B.RBRACKET) {
            if (depth === 0 && mode === 'array' && c === B.RBRACKET) {
              // `]` ends a scalar last item and the array itself.
              closeElement(i);
              mode = 'after';
              continue;
            }
            depth--;
            if (depth === 0 && mode === 'stream') closeElement(i + 1);
          } else if (c === B.COMMA && depth === 0 && mode === 'array') closeElement(i);
          else if (depth === 0 && mode === 'stream' && isWs(c)) closeElement(i);
          continue;
        }
        if (isWs(c)) continue;
        if (mode === 'start') {
          if (c === B.LBRACKET) {
            mode = 'array';
            continue;
          }
          mode = 'stream';
        } else if (mode === 'array') {
          if (c === B.COMMA) continue; // after a closed object/array item
          if (c === B.RBRACKET) {
            mode = 'after';
            continue;
          }
        } else if (mode === 'after') {
          if (trailingJunkLine === 0) trailingJunkLine = line;
          continue;
        }
        // A new element starts here.
        inElement = true;
        elementLine = line;
        captureStart = i;
        depth = 0;
        inString = false;
        escape = false;
        if (c === B.QUOTE) inString = true;
        else if (c === B.LBRACE || c === B.LBRACKET) depth = 1;
      }
      // An item that was an object/array and closed at depth 0 in array mode is closed on the
      // following `,` / `]`; nothing else to do. Carry an open element over to the next chunk.
      if (inElement && captureStart >= 0) {
        const rest = chunk.subarray(captureStart);
        if (!oversize && pieceBytes + rest.length > opts.maxRecordBytes) {
          oversize = true;
          pieces = [];
          pieceBytes = 0;
        } else if (!oversize) {
          pieces.push(Buffer.from(rest));
          pieceBytes += rest.length;
        }
      }
      for (const e of out) yield e;
      opts.onBytes?.(bytesRead);
    }
    if (inElement) {
      if (mode === 'stream' && depth === 0 && !inString) {
        const buf = oversize ? null : Buffer.concat(pieces);
        yield emit(buf);
      } else {
        yield {
          line: elementLine,
          error: 'invalid_json',
          detail: 'unexpected end of file inside this record',
        };
      }
    } else if (mode === 'array') {
      yield {
        line,
        error: 'invalid_json',
        detail: 'unexpected end of file: the top-level array is not closed with ]',
      };
    }
    if (trailingJunkLine > 0) {
      yield {
        line: trailingJunkLine,
        error: 'invalid_json',
        detail: 'unexpected data after the closing ] of the array',
      };
    }
  } finally {
    stream.destroy();
  }
}
