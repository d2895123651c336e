/** The hub domain as the engine sees it: search, files with verdicts, downloads, the token. */
import { join } from 'node:path';
import {
  OvernightError,
  type HubDownload,
  type HubFile,
  type HubFit,
  type HubRepoFiles,
} from '../../contract/index.ts';
import type { ModelLibrary } from '../models/library.ts';
import { ggmlTypeName } from '../models/ggml-types.ts';
import type { EventBus } from '../rpc/events.ts';
import type { Handlers } from '../rpc/handlers.ts';
import type { ModelDims } from '../runs/estimate.ts';
import { dimsFromGgufInfo, readModelDims } from '../runs/model-dims.ts';
import { DEFAULT_HUB_URL, HubClient, type TreeEntry } from './client.ts';
import { Downloads } from './download.ts';
import { checkRepoId, hubUri, quantizationOf, tensorTypesOf } from './names.ts';
import { recommendedModels } from './recommended.ts';
import { checkToken, type SecretStore } from './token.ts';
import { architectureVerdict, fitFor, type Device, type HeaderFacts } from './verdict.ts';

export interface HubServiceOptions {
  dataDir: string;
  /** Default: $OVERNIGHT_HUB_URL, else https://huggingface.co. */
  baseUrl?: string;
  secrets: SecretStore;
  models: ModelLibrary;
  events: EventBus;
  /** This machine's training device at the default config (runs/device.ts). */
  device(): Promise<Device>;
  /** Automatic resumes after a dropped connection (default 3). */
  retries?: number;
}

const SPLIT = /-\d{5}-of-\d{5}\.gguf$/i;

export class HubService {
  readonly client: HubClient;
  readonly downloads: Downloads;
  readonly modelsDir: string;

  constructor(private readonly o: HubServiceOptions) {
    this.client = new HubClient(o.baseUrl ?? process.env.OVERNIGHT_HUB_URL ?? DEFAULT_HUB_URL, () =>
      o.secrets.read(),
    );
    this.modelsDir = join(o.dataDir, 'models');
    this.downloads = new Downloads({
      modelsDir: this.modelsDir,
      client: this.client,
      addToLibrary: async (path) => (await o.models.add(path)).id,
      emit: (d: HubDownload) => o.events.emit('hub.download', d),
      ...(o.retries !== undefined ? { retries: o.retries } : {}),
    });
  }

  async files(repo: string): Promise<HubRepoFiles> {
    checkRepoId(repo);
    const [info, tree] = await Promise.all([this.client.repoInfo(repo), this.client.tree(repo)]);
    const ggufs = tree.filter((e) => e.type === 'file' && /\.gguf$/i.test(e.path));
    const isProjector = (e: TreeEntry) => /(^|\/)mmproj/i.test(e.path);
    const candidates = ggufs
      .filter((e) => !SPLIT.test(e.path) && !isProjector(e))
      .sort((a, b) => a.size - b.size);

    // One header read per repository (every quantization of a repo shares the architecture and
    // the dimensions): the smallest single file, with HTTP Range requests of a few MB.
    let facts: HeaderFacts | null = null;
    let dims: ModelDims | null = null;
    let headerTypes: { path: string; types: string[] } | null = null;
    let headerProblem = 'the file header was not reachable';
    const rep = candidates[0];
    if (rep) {
      try {
        const header = await this.client.readHeader({ repo, file: rep.path });
        const md = header.metadata as unknown as Record<
          string,
          Record<string, unknown> | undefined
        >;
        const arch = String(md.general?.architecture ?? 'unknown');
        const tensors = header.fullTensorInfo ?? header.tensorInfo ?? [];
        facts = {
          architecture: arch,
          expertCount: Number(md[arch]?.expert_count ?? 0) || 0,
          tensorNames: tensors.map((t) => t.name),
        };
        headerTypes = {
          path: rep.path,
          types: [...new Set(tensors.map((t) => ggmlTypeName(t.ggmlType)))],
        };
        dims = dimsFromGgufInfo(header, rep.size, `${repo}/${rep.path}`);
      } catch (err) {
        headerProblem =
          err instanceof OvernightError
            ? err.message
            : `the file header could not be read (${(err as Error).message})`;
      }
    }
    const device = await this.o.device();
    const files: HubFile[] = ggufs.map((e) => {
      const quantization = quantizationOf(e.path);
      const types = headerTypes?.path === e.path ? headerTypes.types : tensorTypesOf(quantization);
      const fit = fitFor(dims ? { ...dims, weightBytes: e.size } : null, device, headerProblem);
      const verdict = isProjector(e)
        ? {
            architecture: null,
            source: 'unknown' as const,
            supported: false,
            reason: 'a vision projector (mmproj), not a language model',
            fit,
          }
        : architectureVerdict(facts, info.architecture, types, fit, SPLIT.test(e.path));
      return {
        path: e.path,
        size: e.size,
        sha256: e.sha256,
        quantization,
        uri: hubUri({ repo, file: e.path }),
        verdict,
      };
    });
    return { repo: info.id, gated: info.gated, files };
  }

  /** The memory badge of every library model. */
  async modelFits(): Promise<{ id: string; fit: HubFit }[]> {
    const device = await this.o.device();
    const out: { id: string; fit: HubFit }[] = [];
    for (const m of this.o.models.list()) {
      if (!m.fileExists) {
        out.push({ id: m.id, fit: fitFor(null, device, 'the file is missing') });
        continue;
      }
      let dims: ModelDims | null = null;
      let problem = '';
      try {
        dims = await readModelDims(m.path, m.vocabSize);
      } catch (err) {
        problem = (err as Error).message;
      }
      out.push({ id: m.id, fit: fitFor(dims, device, problem) });
    }
    return out;
  }

  async tokenStatus() {
    return { hasToken: (await this.o.secrets.read()) !== null, storage: this.o.secrets.kind };
  }

  async setToken(token: string | null) {
    await this.o.secrets.write(token === null || token.trim() === '' ? null : checkToken(token));
    return this.tokenStatus();
  }

  close(): Promise<void> {
    return this.downloads.close();
  }
}

export function hubHandlers(
  s: HubService,
): Handlers<
  | 'hub.search'
  | 'hub.files'
  | 'hub.download'
  | 'hub.cancel'
  | 'hub.downloads'
  | 'hub.recommended'
  | 'hub.modelFits'
  | 'hub.tokenStatus'
  | 'hub.setToken'
> {
  return {
    'hub.search': ({ query, sort, limit }) => s.client.search(query, sort, limit),
    'hub.files': ({ repo }) => s.files(repo),
    'hub.download': ({ uri }) => s.downloads.start(uri),
    'hub.cancel': ({ id }) => s.downloads.cancel(id),
    'hub.downloads': () => s.downloads.list(),
    'hub.recommended': () => recommendedModels(),
    'hub.modelFits': () => s.modelFits(),
    'hub.tokenStatus': () => s.tokenStatus(),
    'hub.setToken': ({ token }) => s.setToken(token),
  };
}
