/**
 * Downloads a GGUF file from the hub into `<dataDir>/models/<owner>/<name>/<file>`:
 *
 *  - the bytes go to `<file>.part`, with `<file>.part.json` recording the sha256 they belong to;
 *    a later download of the same file (this process or a new one) resumes with
 *    `Range: bytes=<part size>-` when the published sha256 is still the same;
 *  - a connection dropped mid-body is resumed the same way, up to `retries` times, then the
 *    download fails with the .part kept (download again to resume);
 *  - the free disk space (fs.statfs) is checked before any byte is written;
 *  - the sha256 of the whole file is checked against the one the hub publishes
 *    (X-Linked-Etag of the resolve answer); on a mismatch the file is removed and nothing is
 *    added to the library;
 *  - cancel removes the .part;
 *  - the finished file is renamed into place and added to the model library.
 *
 * Our own code over fetch rather than node-llama-cpp's downloader: see docs/hub.md.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { OvernightError, type HubDownload } from '../../contract/index.ts';
import { httpError, networkError, type HubClient } from './client.ts';
import { destinationFor, hubUri, parseHubUri, type HubRef } from './names.ts';

export interface DownloadsOptions {
  modelsDir: string;
  client: HubClient;
  /** Adds the finished file to the model library; returns its id. */
  addToLibrary(path: string): Promise<string>;
  emit(d: HubDownload): void;
  /** Automatic resumes after a dropped connection (default 3). */
  retries?: number;
  /** Free space kept beyond the file's size (default 64 MiB). */
  reserveBytes?: number;
}

interface Active {
  rec: HubDownload;
  ctrl: AbortController;
  done: Promise<HubDownload>;
}

/** What the first answer of a (resumed) request told us. */
interface Opened {
  res: Response;
  start: number;
  total: number | null;
  sha256: string | null;
}

const PROGRESS_MS = 200;

export function formatSize(bytes: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}

function shaOfEtag(v: string | null): string | null {
  if (!v) return null;
  const s = v.replace(/^W\//, '').replace(/"/g, '').trim().toLowerCase();
  return /^[0-9a-f]{64}$/.test(s) ? s : null;
}

export class Downloads {
  private readonly items = new Map<string, Active>();
  private readonly retries: number;
  private readonly reserve: number;

  constructor(private readonly o: DownloadsOptions) {
    this.retries = o.retries ?? 3;
    this.reserve = o.reserveBytes ?? 64 * 1024 * 1024;
  }

  list(): HubDownload[] {
    return [...this.items.values()].map((a) => ({ ...a.rec }));
  }

  get(id: string): HubDownload {
    const a = this.items.get(id);
    if (!a) throw new OvernightError('NOT_FOUND', `no download with id "${id}"`);
    return { ...a.rec };
  }

  /** Resolves when the download has ended (completed, failed or cancelled). */
  wait(id: string): Promise<HubDownload> {
    const a = this.items.get(id);
    if (!a) throw new OvernightError('NOT_FOUND', `no download with id "${id}"`);
    return a.done;
  }

  cancel(id: string): HubDownload {
    const a = this.items.get(id);
    if (!a) throw new OvernightError('NOT_FOUND', `no download with id "${id}"`);
    if (a.rec.state === 'downloading' || a.rec.state === 'verifying') a.ctrl.abort();
    return { ...a.rec };
  }

  async close(): Promise<void> {
    const pending = [...this.items.values()].filter((a) => a.rec.state === 'downloading');
    for (const a of pending) a.ctrl.abort(new Error('engine closing'));
    await Promise.all(pending.map((a) => a.done.catch(() => undefined)));
  }

  /**
   * Checks everything that can be checked before a byte is written (name, access, size, disk
   * space) and throws on failure; then the body streams in the background.
   */
  async start(uri: string): Promise<HubDownload> {
    const ref = parseHubUri(uri);
    const dest = destinationFor(this.o.modelsDir, ref);
    for (const a of this.items.values()) {
      if (
        a.rec.destination === dest &&
        (a.rec.state === 'downloading' || a.rec.state === 'verifying')
      ) {
        throw new OvernightError('CONFLICT', `${hubUri(ref)} is already downloading (${a.rec.id})`);
      }
    }
    const rec: HubDownload = {
      id: randomBytes(6).toString('hex'),
      uri: hubUri(ref),
      repo: ref.repo,
      file: ref.file,
      destination: dest,
      state: 'downloading',
      receivedBytes: 0,
      totalBytes: null,
      resumedFrom: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      sha256: null,
      error: null,
      modelId: null,
      startedAt: new Date().toISOString(),
    };

    if (existsSync(dest)) {
      // Already downloaded (and verified) earlier: make sure it is in the library.
      const size = (await stat(dest)).size;
      const modelId = await this.o.addToLibrary(dest);
      Object.assign(rec, { state: 'completed', receivedBytes: size, totalBytes: size, modelId });
      this.items.set(rec.id, { rec, ctrl: new AbortController(), done: Promise.resolve(rec) });
      this.o.emit({ ...rec });
      return { ...rec };
    }

    await mkdir(dirname(dest), { recursive: true });
    const part = `${dest}.part`;
    const meta = `${dest}.part.json`;
    const ctrl = new AbortController();

    let partSize = await sizeOf(part);
    let opened = await this.open(ref, partSize, ctrl.signal);
    const recorded = await readMeta(meta);
    if (partSize > 0 && (opened.sha256 === null || recorded?.sha256 !== opened.sha256)) {
      // The .part belongs to another version of the file (or cannot be matched): start over.
      await opened.res.body?.cancel();
      await rm(part, { force: true });
      partSize = 0;
      opened = await this.open(ref, 0, ctrl.signal);
    }
    if (opened.start === 0 && partSize > 0) await rm(part, { force: true }); // server ignored Range

    const total = opened.total;
    if (total !== null) {
      const need = total - opened.start;
      const fs = await statfs(dirname(dest));
      const free = Number(fs.bavail) * Number(fs.bsize);
      if (need + this.reserve > free) {
        await opened.res.body?.cancel();
        throw new OvernightError(
          'NO_SPACE',
          `not enough disk space for ${ref.file}: it needs ${formatSize(need)} more and ` +
            `${dirname(dest)} has ${formatSize(free)} free; free some space and try again`,
        );
      }
    }
    await writeFile(meta, JSON.stringify({ sha256: opened.sha256, size: total }));

    Object.assign(rec, {
      totalBytes: total,
      sha256: opened.sha256,
      resumedFrom: opened.start,
      receivedBytes: opened.start,
    });
    const done = this.run(rec, ref, opened, ctrl);
    this.items.set(rec.id, { rec, ctrl, done });
    this.o.emit({ ...rec });
    return { ...rec };
  }

  /**
   * GET the resolve URL from byte `start`. Hugging Face answers 302 with the file's sha256 in
   * X-Linked-Etag and its size in X-Linked-Size, and the CDN serves the bytes; a server that
   * answers 200/206 directly is read the same way (ETag, Content-Range).
   */
  private async open(ref: HubRef, start: number, signal: AbortSignal): Promise<Opened> {
    const auth = await this.o.client.authHeaders();
    const url = this.o.client.fileUrl(ref);
    const range: Record<string, string> = start > 0 ? { range: `bytes=${start}-` } : {};
    const what = `${ref.repo}/${ref.file}`;
    let res: Response;
    let linkedSha: string | null = null;
    let linkedSize: number | null = null;
    try {
      res = await fetch(url, { headers: { ...auth, ...range }, redirect: 'manual', signal });
      for (let hops = 0; res.status >= 300 && res.status < 400 && hops < 5; hops++) {
        linkedSha ??= shaOfEtag(res.headers.get('x-linked-etag'));
        const ls = Number(res.headers.get('x-linked-size'));
        if (
          linkedSize === null &&
          Number.isSafeInteger(ls) &&
          ls >= 0 &&
          res.headers.has('x-linked-size')
        )
          linkedSize = ls;
        const location = res.headers.get('location');
        await res.body?.cancel();
        if (!location)
          throw new OvernightError('NETWORK', `${what}: a redirect without a location`);
        const next = new URL(location, url);
        // The token goes only to the hub itself, never to the CDN it redirects to.
        const sameOrigin = next.origin === new URL(url).origin;
        res = await fetch(next, {
          headers: { ...(sameOrigin ? auth : {}), ...range },
          redirect: 'manual',
          signal,
        });
      }
    } catch (err) {
      if (signal.aborted) throw new OvernightError('CANCELLED', `${what}: cancelled`);
      throw networkError(err, this.o.client.baseUrl);
    }
    if (res.status === 416 && start > 0) {
      // The .part is already complete (or longer than the file): let the caller start over.
      await res.body?.cancel();
      return this.open(ref, 0, signal);
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw httpError(res, what, ref.repo, 'authorization' in auth);
    }
    let begin = 0;
    let total: number | null = linkedSize;
    if (res.status === 206) {
      const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!cr || Number(cr[1]) !== start) {
        await res.body?.cancel();
        throw new OvernightError('NETWORK', `${what}: the server answered a different byte range`);
      }
      begin = start;
      if (cr[3] !== '*') total ??= Number(cr[3]);
    } else {
      const len = Number(res.headers.get('content-length'));
      if (res.headers.has('content-length') && Number.isSafeInteger(len)) total ??= len;
    }
    const sha256 =
      linkedSha ??
      shaOfEtag(res.headers.get('x-linked-etag')) ??
      shaOfEtag(res.headers.get('etag'));
    return { res, start: begin, total, sha256 };
  }

  private async run(
    rec: HubDownload,
    ref: HubRef,
    first: Opened,
    ctrl: AbortController,
  ): Promise<HubDownload> {
    const part = `${rec.destination}.part`;
    const meta = `${rec.destination}.part.json`;
    const what = `${ref.repo}/${ref.file}`;
    const samples: [number, number][] = [[Date.now(), rec.receivedBytes]];
    let lastEmit = 0;
    const progress = (force = false) => {
      const now = Date.now();
      samples.push([now, rec.receivedBytes]);
      while (samples.length > 2 && now - samples[0]![0] > 5000) samples.shift();
      const [t0, b0] = samples[0]!;
      const dt = (now - t0) / 1000;
      rec.bytesPerSecond = dt > 0 ? Math.max(0, (rec.receivedBytes - b0) / dt) : 0;
      rec.etaSeconds =
        rec.totalBytes !== null && rec.bytesPerSecond > 0
          ? Math.max(0, (rec.totalBytes - rec.receivedBytes) / rec.bytesPerSecond)
          : null;
      if (force || now - lastEmit >= PROGRESS_MS) {
        lastEmit = now;
        this.o.emit({ ...rec });
      }
    };
    const finish = (state: HubDownload['state'], error: string | null = null): HubDownload => {
      rec.state = state;
      rec.error = error;
      if (state !== 'downloading') rec.etaSeconds = state === 'completed' ? 0 : null;
      this.o.emit({ ...rec });
      return { ...rec };
    };

    let hash: Hash;
    try {
      hash = await hashFile(part, first.start);
    } catch (err) {
      await first.res.body?.cancel();
      return finish('failed', `cannot read ${part}: ${(err as Error).message}`);
    }

    let opened: Opened | null = first;
    let attempts = 0;
    for (;;) {
      let fh = null;
      try {
        if (!opened) {
          opened = await this.open(ref, rec.receivedBytes, ctrl.signal);
          if (opened.sha256 !== rec.sha256 || opened.start !== rec.receivedBytes) {
            await opened.res.body?.cancel();
            throw new OvernightError('NETWORK', `${what} changed on the hub while downloading`);
          }
        }
        fh = await open(part, opened.start > 0 ? 'a' : 'w');
        const body = opened.res.body;
        if (!body) throw new Error('empty answer');
        for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
          await fh.write(chunk);
          hash.update(chunk);
          rec.receivedBytes += chunk.length;
          progress();
        }
        await fh.close();
        fh = null;
        if (rec.totalBytes !== null && rec.receivedBytes < rec.totalBytes) {
          throw new Error(`the connection closed after ${rec.receivedBytes} bytes`);
        }
        break;
      } catch (err) {
        await fh?.close().catch(() => undefined);
        if (ctrl.signal.aborted) {
          await rm(part, { force: true });
          await rm(meta, { force: true });
          return finish('cancelled', 'cancelled; the partial file was removed');
        }
        if (err instanceof OvernightError && err.code !== 'NETWORK') {
          return finish('failed', err.message);
        }
        if (attempts < this.retries) {
          attempts++;
          opened = null;
          progress(true);
          continue;
        }
        const reason = err instanceof Error ? err.message : String(err);
        return finish(
          'failed',
          `the download of ${what} was interrupted after ${formatSize(rec.receivedBytes)}` +
            `${rec.totalBytes !== null ? ` of ${formatSize(rec.totalBytes)}` : ''} (${reason}); ` +
            `the partial file is kept: download it again to resume`,
        );
      }
    }

    rec.state = 'verifying';
    progress(true);
    const got = hash.digest('hex');
    if (rec.sha256 !== null && got !== rec.sha256) {
      await rm(part, { force: true });
      await rm(meta, { force: true });
      return finish(
        'failed',
        `the downloaded ${ref.file} is corrupt: its sha256 is ${got}, but Hugging Face publishes ` +
          `${rec.sha256}; the file was removed and nothing was added to the library`,
      );
    }
    if (rec.totalBytes !== null && rec.receivedBytes !== rec.totalBytes) {
      await rm(part, { force: true });
      await rm(meta, { force: true });
      return finish(
        'failed',
        `the downloaded ${ref.file} has ${rec.receivedBytes} bytes, expected ${rec.totalBytes}; ` +
          `the file was removed and nothing was added to the library`,
      );
    }
    await rename(part, rec.destination);
    await rm(meta, { force: true });
    try {
      rec.modelId = await this.o.addToLibrary(rec.destination);
    } catch (err) {
      return finish(
        'failed',
        `downloaded to ${rec.destination}, but the library refused it: ${(err as Error).message}`,
      );
    }
    return finish('completed');
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function readMeta(path: string): Promise<{ sha256: string | null } | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as { sha256: string | null };
  } catch {
    return null;
  }
}

/** sha256 state after the first `length` bytes of `path` (a resumed .part). */
async function hashFile(path: string, length: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (length === 0) return hash;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1 })) {
    hash.update(chunk as Buffer);
  }
  return hash;
}
