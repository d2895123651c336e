/**
 * Datasets as the UI sees them: the list; the import wizard (path -> inspect: detected format,
 * mapping, preview, problems -> import, with confirmation when rows would be left out); and the
 * token view of one dataset under a chosen model (stats + histogram, mask preview).
 */
import type {
  DatasetFormatName,
  DatasetInfo,
  InspectResultPayload,
  MaskModeName,
  MethodOutput,
  TokenStatsPayload,
} from '../../../../contract/index.ts';
import { errorMessage } from '../rpc/index.ts';
import type { ConnectionState } from './connection.svelte.ts';
import { load } from './load.ts';

export type FieldMappingInput = Partial<Record<string, string>>;
type Preview = MethodOutput<'datasets.preview'>;

export class ImportWizard {
  path = $state('');
  /** Chosen format; null = as detected. */
  format: DatasetFormatName | null = $state(null);
  mapping: FieldMappingInput = $state({});
  name = $state('');
  inspecting = $state(false);
  importing = $state(false);
  result: InspectResultPayload | null = $state.raw(null);
  error: string | null = $state(null);
  progress: { bytesRead: number; totalBytes: number; records: number } | null = $state(null);
  imported: DatasetInfo | null = $state.raw(null);

  readonly #conn: ConnectionState;
  constructor(conn: ConnectionState) {
    this.#conn = conn;
    conn.client.on('datasets.importProgress', (p) => {
      if (this.inspecting || this.importing) this.progress = p;
    });
  }

  get step(): 'choose' | 'review' | 'done' {
    if (this.imported) return 'done';
    return this.result ? 'review' : 'choose';
  }

  #source() {
    const mapping = Object.fromEntries(
      Object.entries(this.mapping).filter(([, v]) => v && v.trim() !== ''),
    );
    return {
      path: this.path.trim(),
      ...(this.format ? { format: this.format } : {}),
      ...(Object.keys(mapping).length ? { mapping } : {}),
    };
  }

  async inspect(): Promise<void> {
    if (!this.path.trim()) {
      this.error =
        'Enter the full path of a dataset file (JSONL, JSON, CSV, TSV, Parquet, text or Markdown).';
      return;
    }
    this.inspecting = true;
    this.error = null;
    this.progress = null;
    try {
      this.result = await this.#conn.client.call('datasets.inspect', this.#source());
      if (!this.format) this.format = this.result.detection.format;
      if (Object.keys(this.mapping).length === 0)
        this.mapping = { ...this.result.detection.mapping };
    } catch (err) {
      this.error = errorMessage(err);
    } finally {
      this.inspecting = false;
    }
  }

  /** Re-inspect after the user changed the format or the mapping. */
  async reinspect(): Promise<void> {
    await this.inspect();
  }

  async import(acceptProblems: boolean): Promise<DatasetInfo | null> {
    this.importing = true;
    this.error = null;
    this.progress = null;
    try {
      const r = await this.#conn.client.call('datasets.import', {
        ...this.#source(),
        ...(this.name.trim() ? { name: this.name.trim() } : {}),
        acceptProblems,
      });
      if (r.status === 'needs_confirmation') {
        this.error = `${r.counts.invalid + r.counts.duplicates} row(s) would be left out; confirm to import the ${r.counts.valid} valid records.`;
        return null;
      }
      this.imported = r.dataset;
      return r.dataset;
    } catch (err) {
      this.error = errorMessage(err);
      return null;
    } finally {
      this.importing = false;
    }
  }

  /** Stops a running read or import (the engine stores nothing). */
  async stop(): Promise<void> {
    if (!this.inspecting && !this.importing) return;
    try {
      await this.#conn.client.call('datasets.cancel', { path: this.path.trim() });
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  reset(): void {
    this.path = '';
    this.format = null;
    this.mapping = {};
    this.name = '';
    this.result = null;
    this.error = null;
    this.progress = null;
    this.imported = null;
  }
}

export class TokenView {
  modelId: string | null = $state(null);
  seqLen = $state(2048);
  mask: MaskModeName = $state('assistant');
  index = $state(0);
  stats: TokenStatsPayload | null = $state.raw(null);
  preview: Preview | null = $state.raw(null);
  loadingStats = $state(false);
  /** Records tokenized so far in the running stats pass. */
  statsDone = $state(0);
  loadingPreview = $state(false);
  error: string | null = $state(null);

  readonly #conn: ConnectionState;
  readonly datasetId: string;
  #seq = 0;
  constructor(conn: ConnectionState, datasetId: string) {
    this.#conn = conn;
    this.datasetId = datasetId;
    conn.client.on('datasets.statsProgress', (p) => {
      if (p.id === this.datasetId && p.modelId === this.modelId) this.statsDone = p.done;
    });
  }

  async refresh(): Promise<void> {
    if (!this.modelId) return;
    const seq = ++this.#seq;
    const params = {
      id: this.datasetId,
      modelId: this.modelId,
      seqLen: this.seqLen,
      mask: this.mask,
    };
    this.loadingStats = true;
    this.statsDone = 0;
    this.error = null;
    try {
      const s = await this.#conn.client.call('datasets.stats', params);
      if (seq === this.#seq) this.stats = s;
    } catch (err) {
      if (seq === this.#seq) {
        this.stats = null;
        this.error = errorMessage(err);
      }
    } finally {
      if (seq === this.#seq) this.loadingStats = false;
    }
    await this.loadPreview();
  }

  async loadPreview(): Promise<void> {
    if (!this.modelId) return;
    this.loadingPreview = true;
    try {
      this.preview = await this.#conn.client.call('datasets.preview', {
        id: this.datasetId,
        modelId: this.modelId,
        index: this.index,
        mask: this.mask,
      });
    } catch (err) {
      this.preview = null;
      this.error = errorMessage(err);
    } finally {
      this.loadingPreview = false;
    }
  }
}

export class DatasetsState {
  list: DatasetInfo[] = $state.raw([]);
  loading = $state(false);
  loaded = $state(false);
  error: string | null = $state(null);
  removing: string | null = $state(null);
  readonly wizard: ImportWizard;

  readonly #conn: ConnectionState;
  // A cache, not state: each TokenView holds its own reactive fields.
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  #views = new Map<string, TokenView>();

  constructor(conn: ConnectionState) {
    this.#conn = conn;
    this.wizard = new ImportWizard(conn);
    conn.client.on('datasets.changed', () => void this.load());
    conn.whenOpen(() => void this.load());
  }

  byId(id: string): DatasetInfo | undefined {
    return this.list.find((d) => d.id === id);
  }

  /** The token view of a dataset (kept while the app runs, so switching back is instant). */
  view(id: string): TokenView {
    let v = this.#views.get(id);
    if (!v) {
      v = new TokenView(this.#conn, id);
      this.#views.set(id, v);
    }
    return v;
  }

  async load(): Promise<void> {
    await load(
      this,
      () => this.#conn.client.call('datasets.list', {}),
      (list) => {
        this.list = list;
        this.loaded = true;
      },
    );
  }

  async remove(id: string): Promise<boolean> {
    this.removing = id;
    try {
      await this.#conn.client.call('datasets.remove', { id });
      this.list = this.list.filter((d) => d.id !== id);
      this.#views.delete(id);
      return true;
    } catch (err) {
      this.error = `Could not remove the dataset: ${errorMessage(err)}`;
      return false;
    } finally {
      this.removing = null;
    }
  }
}
