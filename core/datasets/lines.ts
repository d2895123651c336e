/**
 * Line splitting over a byte stream, in bounded memory. Lines are split on LF bytes, a CR
 * before the LF is dropped (CRLF files), a UTF-8 BOM at the start of the file is dropped, and
 * each line is decoded on its own with a fatal UTF-8 decoder, so invalid bytes are reported
 * with their exact line number. A line longer than `maxLineBytes` is not held in memory: its
 * bytes are skipped up to the next LF and it is reported as too long.
 *
 * Memory: one read chunk plus the pieces of the current line (at most `maxLineBytes`).
 */
import { createReadStream } from 'node:fs';

export type LineItem =
  | { line: number; text: string }
  | { line: number; error: 'invalid_utf8'; detail: string }
  | { line: number; error: 'line_too_long'; bytes: number };

export interface LineOptions {
  /** Longest line kept in memory; longer lines are skipped and reported. */
  maxLineBytes: number;
  /** Called with the bytes read so far (after each chunk). */
  onBytes?: (bytesRead: number) => void;
  signal?: AbortSignal;
  /** Read chunk size (bytes). */
  highWaterMark?: number;
  /** Byte offset to start at (a line start); line numbers then count from there. */
  start?: number;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * A file stream's chunks for the streaming readers: a leading UTF-8 byte order mark removed,
 * `onRead` told each raw chunk's size (progress), and the signal's reason thrown once aborted.
 */
export async function* fileChunks(
  stream: AsyncIterable<unknown>,
  signal: AbortSignal | undefined,
  onRead: (bytes: number) => void,
): AsyncGenerator<Buffer> {
  let first = true;
  for await (const raw of stream) {
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    let chunk = raw as Buffer;
    onRead(chunk.length);
    if (first) {
      first = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf)
        chunk = chunk.subarray(3);
    }
    yield chunk;
  }
}

/** Position of the first invalid UTF-8 sequence in `b`, or -1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return i;
    let cp = c & (need === 1 ? 0x1f : need === 2 ? 0x0f : 0x07);
    for (let k = 1; k <= need; k++) {
      const cc = b[i + k];
      if (cc === undefined || (cc & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode strictly; on failure say where the first bad byte is. */
export function decodeUtf8(b: Uint8Array): { text: string } | { error: string } {
  try {
    return { text: fatalDecoder.decode(b) };
  } catch {
    const at = firstInvalidUtf8(b);
    const byte = at >= 0 ? b[at]! : 0;
    return {
      error: `invalid UTF-8 at byte ${at + 1} of the line (0x${byte.toString(16).padStart(2, '0')})`,
    };
  }
}

export async function* readLines(path: string, opts: LineOptions): AsyncGenerator<LineItem> {
  const stream = createReadStream(path, {
    highWaterMark: opts.highWaterMark ?? 1 << 20,
    start: opts.start ?? 0,
  });
  let lineNo = 1;
  let pieces: Buffer[] = [];
  let pieceBytes = 0;
  let skipping = false; // inside a line that is over the cap
  let skippedBytes = 0;
  let bytesRead = 0;

  const finish = (buf: Buffer): LineItem => {
    let end = buf.length;
    if (end > 0 && buf[end - 1] === CR) end--;
    const d = decodeUtf8(end === buf.length ? buf : buf.subarray(0, end));
    if ('text' in d) return { line: lineNo, text: d.text };
    return { line: lineNo, error: 'invalid_utf8', detail: d.error };
  };

  try {
    for await (const chunk of fileChunks(stream, opts.signal, (n) => (bytesRead += n))) {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(LF, start);
        if (nl < 0) break;
        if (skipping) {
          skippedBytes += nl - start;
          yield { line: lineNo, error: 'line_too_long', bytes: skippedBytes };
          skipping = false;
          skippedBytes = 0;
        } else {
          const part = chunk.subarray(start, nl);
          if (pieceBytes + part.length > opts.maxLineBytes) {
            yield { line: lineNo, error: 'line_too_long', bytes: pieceBytes + part.length };
          } else if (pieces.length === 0) {
            yield finish(part);
          } else {
            pieces.push(part);
            yield finish(Buffer.concat(pieces));
          }
          pieces = [];
          pieceBytes = 0;
        }
        lineNo++;
        start = nl + 1;
      }
      if (start < chunk.length) {
        const rest = chunk.subarray(start);
        if (skipping) skippedBytes += rest.length;
        else if (pieceBytes + rest.length > opts.maxLineBytes) {
          skipping = true;
          skippedBytes = pieceBytes + rest.length;
          pieces = [];
          pieceBytes = 0;
        } else {
          // Copy: the stream may reuse its buffer.
          pieces.push(Buffer.from(rest));
          pieceBytes += rest.length;
        }
      }
      opts.onBytes?.(bytesRead);
    }
    if (skipping) yield { line: lineNo, error: 'line_too_long', bytes: skippedBytes };
    else if (pieceBytes > 0) yield finish(Buffer.concat(pieces));
  } finally {
    stream.destroy();
  }
}
