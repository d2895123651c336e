/**
 * Names that come from outside (a typed `hf:` URI, a repository id from a search result, a file
 * path from a repository tree) and become URL paths and file paths on this machine. Everything
 * is checked here, so a hostile name can never leave the data dir's models/ folder.
 */
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { OvernightError } from '../../contract/index.ts';

/** Hugging Face's rule for owner and repository names (letters, digits, - _ .; no leading dot). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
/** One segment of a file path inside a repository. */
const SEGMENT = /^[A-Za-z0-9._+()[\] -]{1,200}$/;

export function checkRepoId(repo: string): string {
  const parts = repo.split('/');
  if (parts.length !== 2 || !parts.every((p) => NAME.test(p) && !p.includes('..'))) {
    throw new OvernightError(
      'INVALID_INPUT',
      `"${repo}" is not a Hugging Face repository id: expected owner/name (letters, digits, - _ .)`,
    );
  }
  return repo;
}

export function checkRepoFile(file: string): string {
  const parts = file.split('/');
  const bad = parts.find((p) => !SEGMENT.test(p) || p === '.' || p === '..' || p.trim() !== p);
  if (bad !== undefined || file.includes('\\') || file.startsWith('/')) {
    throw new OvernightError(
      'INVALID_INPUT',
      `"${file}" is not a usable file path inside a repository (no "..", no absolute paths, no backslashes)`,
    );
  }
  if (!/\.gguf$/i.test(file)) {
    throw new OvernightError('INVALID_INPUT', `"${file}" is not a .gguf file`);
  }
  return file;
}

export interface HubRef {
  repo: string;
  file: string;
}

/**
 * `hf:owner/name/path/to/file.gguf` (also `hf://`, `huggingface:` and a
 * `https://huggingface.co/owner/name/resolve/main/file.gguf` link). A quantization tag
 * (`hf:owner/name:Q4_K_M`) is not taken: pick the file from `models search` / the Hub page.
 */
export function parseHubUri(uri: string): HubRef {
  let rest = uri.trim();
  const url =
    /^https?:\/\/(?:huggingface\.co|hf\.co)\/([^/]+\/[^/]+)\/(?:resolve|blob)\/main\/(.+)$/.exec(
      rest,
    );
  if (url) rest = `${url[1]}/${decodeURIComponent(url[2]!.split('?')[0]!)}`;
  else {
    const m = /^(?:hf:\/\/|hf:|huggingface:\/\/|huggingface:)(.*)$/.exec(rest);
    if (!m) {
      throw new OvernightError(
        'INVALID_INPUT',
        `"${uri}" is not a Hugging Face file: expected hf:owner/name/file.gguf`,
      );
    }
    rest = m[1]!;
  }
  const parts = rest.split('/');
  if (parts.length < 3) {
    throw new OvernightError(
      'INVALID_INPUT',
      `"${uri}" names no file: expected hf:owner/name/file.gguf (see "overnight models search")`,
    );
  }
  const repo = checkRepoId(parts.slice(0, 2).join('/'));
  const file = checkRepoFile(parts.slice(2).join('/'));
  return { repo, file };
}

export function hubUri(ref: HubRef): string {
  return `hf:${ref.repo}/${ref.file}`;
}

/** `<modelsDir>/<owner>/<name>/<file>`, refused if it would resolve outside modelsDir. */
export function destinationFor(modelsDir: string, ref: HubRef): string {
  const root = resolve(modelsDir);
  const dest = resolve(
    join(root, ...checkRepoId(ref.repo).split('/'), ...checkRepoFile(ref.file).split('/')),
  );
  const rel = relative(root, dest);
  if (rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) {
    throw new OvernightError(
      'INVALID_INPUT',
      `"${ref.repo}/${ref.file}" would land outside ${root}`,
    );
  }
  return dest;
}

/** `/owner/name/resolve/main/a/b.gguf` with each segment encoded. */
export function resolvePath(ref: HubRef): string {
  const enc = (s: string) => s.split('/').map(encodeURIComponent).join('/');
  return `/${enc(ref.repo)}/resolve/main/${enc(ref.file)}`;
}

const QUANT =
  /(?:^|[-_.])((?:I?Q[1-8](?:_[0-9])?(?:_K)?(?:_[SMLX]{1,2})?)|F16|F32|BF16|TQ[12]_0|MXFP4)(?=[-_.]|$)/i;

/** The quantization named in a GGUF file name ("…-Q4_K_M.gguf" → "Q4_K_M"), or null. */
export function quantizationOf(file: string): string | null {
  const base = file
    .split('/')
    .pop()!
    .replace(/\.gguf$/i, '');
  const m = QUANT.exec(base);
  return m ? m[1]!.toUpperCase() : null;
}

/** Tensor types a quantization label implies (llama.cpp's quantizer mixes), for the pre-download verdict. */
export function tensorTypesOf(quant: string | null): string[] | null {
  if (!quant) return null;
  const q = quant.toUpperCase();
  const table: Record<string, string[]> = {
    F32: ['F32'],
    F16: ['F16', 'F32'],
    BF16: ['BF16', 'F32'],
    Q8_0: ['Q8_0', 'F32'],
    Q4_0: ['Q4_0', 'F32'],
    Q4_K_S: ['Q4_K', 'Q5_K', 'Q6_K', 'F32'],
    Q4_K_M: ['Q4_K', 'Q6_K', 'F32'],
    Q5_K_S: ['Q5_K', 'Q6_K', 'F32'],
    Q5_K_M: ['Q5_K', 'Q6_K', 'F32'],
    Q6_K: ['Q6_K', 'F32'],
  };
  if (table[q]) return table[q];
  // Anything else (Q2_K, Q3_K_*, IQ*, Q4_1, Q5_0, Q5_1, TQ*, MXFP4) has a type the trainer lacks.
  const first = q.replace(/_[SMLX]{1,2}$/, '');
  return [first, 'F32'];
}
