/**
 * The export's file rules, in one place:
 *  - names: a name the user typed is checked (`checkName`) and refused when it could leave the
 *    chosen folder or is not portable; a name we derive (run + model) is sanitized (`safeName`).
 *  - writes: every file goes to a temporary name in the same folder (`.<name>.partial-<rand>`),
 *    is flushed, then moved to its final name (`AtomicFile.commit`). A write that fails (disk
 *    full) or is cancelled removes the temporary file; nothing appears under the final name.
 *  - overwrite: `commit` links the temp file to the final name (link fails if it exists: no
 *    race between a check and the move) unless the caller chose to overwrite (then rename).
 *  - folders (packages): written whole into `.<name>.partial-<rand>/` and renamed into place.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { OvernightError } from '../../contract/index.ts';

const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
export const MAX_NAME = 120;

/** Null when `name` is a safe single file/folder name, else why not (for the error message). */
export function nameProblem(name: string): string | null {
  if (name.length === 0) return 'it is empty';
  if (name.includes('\0')) return 'it contains a NUL character';
  if (isAbsolute(name) || /^[a-zA-Z]:/.test(name)) return 'it is an absolute path';
  if (name.includes('/') || name.includes('\\')) return 'it contains a path separator';
  if (name === '.' || name === '..' || name.includes('..')) return 'it contains ".."';
  if (name.startsWith('.')) return 'it starts with "." (a hidden file)';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'it contains a control character';
  if (/[<>:"|?*]/.test(name)) return 'it contains one of < > : " | ? *';
  if (/[. ]$/.test(name)) return 'it ends with a dot or a space';
  if (RESERVED.test(name)) return `"${name.split('.')[0]}" is a reserved device name on Windows`;
  if (name.length > MAX_NAME) return `it is longer than ${MAX_NAME} characters`;
  return null;
}

/** Throws INVALID_INPUT naming `field` when the user's name is not safe (see nameProblem). */
export function checkName(name: string, field = 'name'): string {
  const why = nameProblem(name);
  if (why)
    throw new OvernightError('INVALID_INPUT', `${field} "${printable(name)}" is refused: ${why}`);
  return name;
}

/** A safe name from free text (run and model names): lower-case words joined by '-'. */
export function safeName(...parts: string[]): string {
  const s = parts
    .join('-')
    .normalize('NFKD')
    .replace(/[^\w.-]+/g, '-')
    .replace(/\.{2,}/g, '.')
    .replace(/-{2,}/g, '-')
    .replace(/^[-.]+|[-. ]+$/g, '')
    .toLowerCase()
    .slice(0, MAX_NAME - 20)
    .replace(/[-. ]+$/g, '');
  const name = s || 'adapter';
  return RESERVED.test(name) ? `${name}-export` : name;
}

/** `dir/name` after checking that it stays inside dir (it always does for a checked name). */
export function inside(dir: string, name: string): string {
  const root = resolve(dir);
  const p = resolve(root, name);
  if (p === root || !p.startsWith(root + '/'))
    throw new OvernightError('INVALID_INPUT', `"${printable(name)}" would leave ${root}`);
  return p;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/g;

function printable(s: string): string {
  return s.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The output folder: absolute, created when missing, a folder. */
export function prepareOutDir(outDir: string): string {
  if (outDir.includes('\0'))
    throw new OvernightError('INVALID_INPUT', 'outDir contains a NUL character');
  if (!isAbsolute(outDir))
    throw new OvernightError('INVALID_INPUT', `outDir "${outDir}" must be an absolute path`);
  const dir = resolve(outDir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new OvernightError(
      'INVALID_INPUT',
      `cannot create the folder ${dir}: ${(err as Error).message}`,
    );
  }
  if (!lstatSync(dir).isDirectory())
    throw new OvernightError('INVALID_INPUT', `${dir} is not a folder`);
  return dir;
}

/** CONFLICT unless `overwrite`: the final name exists. */
export function refuseExisting(path: string, overwrite: boolean): void {
  if (!overwrite && existsSync(path))
    throw new OvernightError(
      'CONFLICT',
      `${path} already exists: choose another name or overwrite it (--overwrite)`,
    );
}

/** `.<name>.partial-<pid>-<random>` beside the final path (the pid lets a later export sweep it). */
export function tempName(finalPath: string): string {
  const dir = resolve(finalPath, '..');
  return join(
    dir,
    `.${basename(finalPath)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

/**
 * Removes what a killed export of the same final name left (its temporary file or folder, named
 * with the pid of a process that no longer runs). A live process's temporaries are left alone.
 */
export function sweepStale(finalPath: string): string[] {
  const dir = resolve(finalPath, '..');
  const prefix = `.${basename(finalPath)}.`;
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const m = /^(?:partial|old)-(\d+)-[0-9a-f]+$/.exec(n.slice(prefix.length));
    if (!m || alive(Number(m[1]))) continue;
    rmSync(join(dir, n), { recursive: true, force: true });
    removed.push(join(dir, n));
  }
  return removed;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Test-only fault injection: called before each write with the bytes written so far to this
 * file; throwing there acts like the disk failing at that point. Null in normal use.
 */
export const writeFaults: { beforeWrite: ((path: string, written: number) => void) | null } = {
  beforeWrite: null,
};

/** Disk-full and quota errors get a message that says so. */
function ioError(err: unknown, path: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT')
    return new OvernightError('NO_SPACE', `the disk is full writing ${path}: nothing was kept`);
  if (e instanceof OvernightError) return e;
  return new OvernightError('INTERNAL', `writing ${path} failed: ${e.message}`);
}

/** One file written under a temporary name, then moved to `finalPath` (or thrown away). */
export class AtomicFile {
  readonly tmp: string;
  private fd: number | null;
  written = 0;

  constructor(
    readonly finalPath: string,
    private readonly signal?: AbortSignal,
  ) {
    sweepStale(finalPath);
    this.tmp = tempName(finalPath);
    this.fd = openSync(this.tmp, 'wx', 0o644);
  }

  write(chunk: Uint8Array): void {
    if (this.fd === null) throw new Error(`${this.finalPath}: write after close`);
    if (this.signal?.aborted) {
      this.abort();
      throw new OvernightError(
        'CANCELLED',
        `the export was cancelled; ${this.finalPath} was not written`,
      );
    }
    try {
      writeFaults.beforeWrite?.(this.finalPath, this.written);
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(this.fd, chunk, off, chunk.byteLength - off);
      this.written += chunk.byteLength;
    } catch (err) {
      this.abort();
      throw ioError(err, this.finalPath);
    }
  }

  /** Flush, then move to the final name; refuses an existing file unless `overwrite`. */
  commit(overwrite: boolean): void {
    if (this.fd === null) throw new Error(`${this.finalPath}: commit after close`);
    try {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = null;
      if (overwrite) renameSync(this.tmp, this.finalPath);
      else {
        linkOrRename(this.tmp, this.finalPath);
      }
    } catch (err) {
      this.abort();
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        refuseExisting(this.finalPath, false);
      }
      throw ioError(err, this.finalPath);
    }
  }

  /** Close and remove the temporary file (idempotent). */
  abort(): void {
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = null;
    }
    rmSync(this.tmp, { force: true });
  }
}

/** No-clobber move: link (fails with EEXIST) then unlink; where links are not allowed, check + rename. */
function linkOrRename(tmp: string, final: string): void {
  try {
    linkSync(tmp, final);
    unlinkSync(tmp);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw err;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV') {
      if (existsSync(final)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
      renameSync(tmp, final);
      return;
    }
    throw err;
  }
}

/** Writes a whole small file (text) atomically. */
export function writeFileAtomic(path: string, data: string | Uint8Array, overwrite: boolean): void {
  const f = new AtomicFile(path);
  f.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  f.commit(overwrite);
}

/**
 * A package folder built under a temporary name and moved into place whole. Files inside are
 * written directly (the folder itself is the temporary); `commit` renames it to `finalPath`,
 * replacing an existing folder only when `overwrite` (the old one is moved aside, then removed).
 */
export class AtomicFolder {
  readonly tmp: string;
  private done = false;

  constructor(readonly finalPath: string) {
    sweepStale(finalPath);
    this.tmp = tempName(finalPath);
    mkdirSync(this.tmp);
  }

  path(name: string): string {
    return inside(this.tmp, name);
  }

  commit(overwrite: boolean): void {
    try {
      if (existsSync(this.finalPath)) {
        refuseExisting(this.finalPath, overwrite);
        const old = tempName(this.finalPath).replace('.partial-', '.old-');
        renameSync(this.finalPath, old);
        try {
          renameSync(this.tmp, this.finalPath);
        } catch (err) {
          renameSync(old, this.finalPath);
          throw err;
        }
        rmSync(old, { recursive: true, force: true });
      } else {
        renameSync(this.tmp, this.finalPath);
      }
      this.done = true;
    } catch (err) {
      this.abort();
      throw ioError(err, this.finalPath);
    }
  }

  abort(): void {
    if (!this.done) rmSync(this.tmp, { recursive: true, force: true });
  }
}
