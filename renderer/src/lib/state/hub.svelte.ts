/** The model hub as the UI sees it: search, a repository's files, downloads, the access token. */
import type {
  HubDownload,
  HubRepo,
  HubRepoFiles,
  RecommendedModel,
} from '../../../../contract/index.ts';
import { errorMessage } from '../rpc/index.ts';
import type { ConnectionState } from './connection.svelte.ts';

export class HubState {
  query = $state('');
  sort: 'downloads' | 'likes' = $state('downloads');
  results: HubRepo[] | null = $state.raw(null);
  searching = $state(false);
  searchError: string | null = $state(null);

  repo: string | null = $state(null);
  files: HubRepoFiles | null = $state.raw(null);
  filesLoading = $state(false);
  filesError: string | null = $state(null);

  downloads: HubDownload[] = $state.raw([]);
  /** Errors of downloads that could not start, by hf: URI. */
  startErrors: Record<string, string> = $state({});
  recommended: RecommendedModel[] = $state.raw([]);
  hasToken = $state(false);
  tokenStorage: 'os-secret-store' | 'file' = $state('file');
  tokenError: string | null = $state(null);

  readonly #conn: ConnectionState;

  constructor(conn: ConnectionState) {
    this.#conn = conn;
    conn.client.on('hub.download', (d) => {
      const rest = this.downloads.filter((x) => x.id !== d.id);
      this.downloads = [d, ...rest].sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    });
    conn.whenOpen(() => void this.loadSession());
  }

  async loadSession(): Promise<void> {
    try {
      const [downloads, recommended, token] = await Promise.all([
        this.#conn.client.call('hub.downloads', {}),
        this.#conn.client.call('hub.recommended', {}),
        this.#conn.client.call('hub.tokenStatus', {}),
      ]);
      this.downloads = downloads.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
      this.recommended = recommended;
      this.hasToken = token.hasToken;
      this.tokenStorage = token.storage;
    } catch {
      // The page shows what loaded; the next reconnect tries again.
    }
  }

  async search(): Promise<void> {
    this.searching = true;
    this.searchError = null;
    try {
      this.results = await this.#conn.client.call('hub.search', {
        query: this.query,
        sort: this.sort,
      });
    } catch (err) {
      this.searchError = errorMessage(err);
    } finally {
      this.searching = false;
    }
  }

  async open(repo: string): Promise<void> {
    this.repo = repo;
    this.files = null;
    this.filesError = null;
    this.filesLoading = true;
    try {
      const files = await this.#conn.client.call('hub.files', { repo });
      if (this.repo === repo) this.files = files;
    } catch (err) {
      if (this.repo === repo) this.filesError = errorMessage(err);
    } finally {
      if (this.repo === repo) this.filesLoading = false;
    }
  }

  /** The download of this URI in this session, newest first. */
  downloadOf(uri: string): HubDownload | undefined {
    return this.downloads.find((d) => d.uri === uri);
  }

  async download(uri: string): Promise<void> {
    const { [uri]: _, ...rest } = this.startErrors;
    this.startErrors = rest;
    try {
      const d = await this.#conn.client.call('hub.download', { uri });
      this.downloads = [d, ...this.downloads.filter((x) => x.id !== d.id)];
    } catch (err) {
      this.startErrors = { ...this.startErrors, [uri]: errorMessage(err) };
    }
  }

  async cancel(id: string): Promise<void> {
    try {
      await this.#conn.client.call('hub.cancel', { id });
    } catch {
      // Already over: the event shows how it ended.
    }
  }

  async setToken(token: string | null): Promise<boolean> {
    this.tokenError = null;
    try {
      const st = await this.#conn.client.call('hub.setToken', { token });
      this.hasToken = st.hasToken;
      this.tokenStorage = st.storage;
      return true;
    } catch (err) {
      this.tokenError = errorMessage(err);
      return false;
    }
  }
}
