/**
 * A small client for the Hugging Face Hub's HTTP API, over Node's fetch. Endpoints used (and
 * emulated by test/hub-server.ts):
 *
 *   GET /api/models?search=<q>&filter=gguf&sort=downloads|likes&direction=-1&limit=<n>
 *   GET /api/models/<owner>/<name>                       gated, tags, gguf.architecture
 *   GET /api/models/<owner>/<name>/tree/main?recursive=true   files: path, size, lfs.oid (sha256)
 *   GET /<owner>/<name>/resolve/main/<file>              302 to the CDN with X-Linked-Etag
 *                                                         (the sha256) and X-Linked-Size; Range
 *
 * Errors become OvernightErrors in plain words: offline (NETWORK), not found (NOT_FOUND), gated
 * without or with a refused token (ACCESS_DENIED), rate limits and server errors (NETWORK).
 */
import { OvernightError, type HubRepo } from '../../contract/index.ts';
import { checkRepoId, resolvePath, type HubRef } from './names.ts';

export const DEFAULT_HUB_URL = 'https://huggingface.co';

export interface TreeEntry {
  type: string;
  path: string;
  size: number;
  /** The LFS object's sha256 (hex), when the file is stored with LFS (every GGUF is). */
  sha256: string | null;
}

export interface RepoInfo {
  id: string;
  gated: false | string;
  tags: string[];
  /** `gguf.architecture` of the model card data, when the hub computed it. */
  architecture: string | null;
}

/** The error a failed request turns into; `what` names the thing asked for. */
export function httpError(
  res: { status: number; headers: Headers },
  what: string,
  repo: string,
  hasToken: boolean,
): OvernightError {
  const code = res.headers.get('x-error-code') ?? '';
  if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code === '')) {
    if (res.status === 403 || hasToken) {
      return new OvernightError(
        'ACCESS_DENIED',
        `${repo} is a gated model and your access token has not been granted access: open ` +
          `https://huggingface.co/${repo}, accept its conditions, wait for approval, then try again`,
      );
    }
    return new OvernightError(
      'ACCESS_DENIED',
      `${repo} is a gated model: accept its conditions on https://huggingface.co/${repo}, then set ` +
        `a Hugging Face access token (Hub page, or "overnight hub token <token>") and try again`,
    );
  }
  if (code === 'RepoNotFound' || (res.status === 401 && code !== 'EntryNotFound')) {
    return new OvernightError(
      'NOT_FOUND',
      `there is no repository ${repo} on Hugging Face (or it is private and needs a token)`,
    );
  }
  if (code === 'EntryNotFound' || res.status === 404) {
    return new OvernightError('NOT_FOUND', `${what} was not found on Hugging Face`);
  }
  if (res.status === 429) {
    return new OvernightError(
      'NETWORK',
      'Hugging Face is rate-limiting requests from this machine: wait a minute and try again',
    );
  }
  return new OvernightError(
    'NETWORK',
    `Hugging Face answered ${res.status} for ${what}: try again later`,
  );
}

/** A fetch failure (no HTTP answer at all) in plain words. */
export function networkError(err: unknown, base: string): OvernightError {
  if (err instanceof OvernightError) return err;
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'AbortError' || e.name === 'TimeoutError') {
    return new OvernightError('NETWORK', `no answer from ${base} in time: check the connection`);
  }
  const code = e.cause?.code ?? '';
  return new OvernightError(
    'NETWORK',
    `cannot reach ${base}${code ? ` (${code})` : ''}: this machine seems to be offline, or the ` +
      `address is blocked`,
  );
}

export class HubClient {
  readonly baseUrl: string;
  constructor(
    baseUrl: string,
    private readonly token: () => Promise<string | null>,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async authHeaders(): Promise<Record<string, string>> {
    const t = await this.token();
    return t ? { authorization: `Bearer ${t}` } : {};
  }

  /** GET a JSON API path; errors in plain words. */
  async getJson(
    path: string,
    what: string,
    repo: string,
  ): Promise<{ body: unknown; res: Response }> {
    const auth = await this.authHeaders();
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        headers: { accept: 'application/json', ...auth },
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw networkError(err, this.baseUrl);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw httpError(res, what, repo, 'authorization' in auth);
    }
    try {
      return { body: await res.json(), res };
    } catch {
      throw new OvernightError(
        'NETWORK',
        `${this.baseUrl} answered ${what} with something that is not JSON`,
      );
    }
  }

  async search(query: string, sort: 'downloads' | 'likes', limit: number): Promise<HubRepo[]> {
    const q = new URLSearchParams({ filter: 'gguf', sort, direction: '-1', limit: String(limit) });
    if (query.trim()) q.set('search', query.trim());
    for (const f of ['downloads', 'likes', 'gated', 'tags', 'lastModified']) q.append('expand', f);
    const { body } = await this.getJson(`/api/models?${q}`, `the search "${query}"`, '');
    if (!Array.isArray(body))
      throw new OvernightError('NETWORK', 'the search answer is not a list');
    const out: HubRepo[] = [];
    for (const raw of body as Record<string, unknown>[]) {
      const id =
        typeof raw.id === 'string' ? raw.id : typeof raw.modelId === 'string' ? raw.modelId : null;
      if (!id) continue;
      out.push({
        id,
        downloads: nonNegInt(raw.downloads),
        likes: nonNegInt(raw.likes),
        gated: gatedOf(raw.gated),
        tags: Array.isArray(raw.tags)
          ? raw.tags.filter((t): t is string => typeof t === 'string')
          : [],
        lastModified: typeof raw.lastModified === 'string' ? raw.lastModified : null,
      });
    }
    return out;
  }

  async repoInfo(repo: string): Promise<RepoInfo> {
    checkRepoId(repo);
    const { body } = await this.getJson(`/api/models/${repo}`, `the repository ${repo}`, repo);
    const raw = (body ?? {}) as Record<string, unknown>;
    const gguf = (raw.gguf ?? {}) as Record<string, unknown>;
    return {
      id: typeof raw.id === 'string' ? raw.id : repo,
      gated: gatedOf(raw.gated),
      tags: Array.isArray(raw.tags)
        ? raw.tags.filter((t): t is string => typeof t === 'string')
        : [],
      architecture: typeof gguf.architecture === 'string' ? gguf.architecture : null,
    };
  }

  /** Every file of the main branch (follows the Link: rel="next" pages of big repositories). */
  async tree(repo: string): Promise<TreeEntry[]> {
    checkRepoId(repo);
    const out: TreeEntry[] = [];
    let path: string | null = `/api/models/${repo}/tree/main?recursive=true`;
    for (let page = 0; path && page < 50; page++) {
      const { body, res } = await this.getJson(path, `the files of ${repo}`, repo);
      if (!Array.isArray(body)) throw new OvernightError('NETWORK', 'the file list is not a list');
      for (const raw of body as Record<string, unknown>[]) {
        if (typeof raw.path !== 'string') continue;
        const lfs = (raw.lfs ?? null) as Record<string, unknown> | null;
        const oid = typeof lfs?.oid === 'string' ? lfs.oid : null;
        out.push({
          type: typeof raw.type === 'string' ? raw.type : 'file',
          path: raw.path,
          size: nonNegInt(lfs?.size ?? raw.size),
          sha256: oid && /^[0-9a-f]{64}$/.test(oid) ? oid : null,
        });
      }
      const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '');
      path = next
        ? new URL(next[1]!, this.baseUrl).pathname + new URL(next[1]!, this.baseUrl).search
        : null;
    }
    return out;
  }

  /** The file's download URL. */
  fileUrl(ref: HubRef): string {
    return this.baseUrl + resolvePath(ref);
  }

  /**
   * The GGUF header (metadata + tensor infos) of a remote file, read with HTTP Range requests
   * of a few MB by node-llama-cpp's reader; the weights are never downloaded.
   */
  async readHeader(ref: HubRef) {
    const { readGgufFileInfo } = await import('node-llama-cpp');
    const auth = await this.authHeaders();
    return readGgufFileInfo(this.fileUrl(ref), {
      sourceType: 'network',
      readTensorInfo: true,
      logWarnings: false,
      spliceSplitFiles: false,
      fetchHeaders: auth,
      fetchRetryOptions: { retries: 0 },
      ignoreKeys: [
        'tokenizer.ggml.merges',
        'tokenizer.ggml.token_type',
        'tokenizer.ggml.scores',
        'tokenizer.ggml.tokens',
      ],
      signal: AbortSignal.timeout(60_000),
    });
  }
}

function nonNegInt(v: unknown): number {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function gatedOf(v: unknown): false | string {
  if (v === true) return 'auto';
  return typeof v === 'string' && v !== 'false' ? v : false;
}
