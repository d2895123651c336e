/** The model library as the UI sees it: the list, its loading/error state, add and remove. */
import type { HubFit, ModelInfo } from '../../../../contract/index.ts';
import { RpcError, errorMessage } from '../rpc/index.ts';
import type { ConnectionState } from './connection.svelte.ts';
import { load } from './load.ts';

export class ModelsState {
  /** Replaced wholesale on every load, never mutated: $state.raw. */
  list: ModelInfo[] = $state.raw([]);
  loading = $state(false);
  /** True once a load has succeeded (tells "empty library" apart from "not loaded yet"). */
  loaded = $state(false);
  error: string | null = $state(null);
  adding = $state(false);
  addError: RpcError | null = $state(null);
  removing: string | null = $state(null);
  /** The memory badge of each model for this machine (hub.modelFits), by id. */
  fits: Record<string, HubFit> = $state.raw({});

  readonly #conn: ConnectionState;

  constructor(conn: ConnectionState) {
    this.#conn = conn;
    conn.client.on('models.changed', () => void this.load());
    conn.whenOpen(() => void this.load());
  }

  byId(id: string): ModelInfo | undefined {
    return this.list.find((m) => m.id === id);
  }

  async load(): Promise<void> {
    await load(
      this,
      () => this.#conn.client.call('models.list', {}),
      (list) => {
        this.list = list;
        this.loaded = true;
      },
    );
    void this.loadFits();
  }

  async loadFits(): Promise<void> {
    try {
      const fits = await this.#conn.client.call('hub.modelFits', {});
      this.fits = Object.fromEntries(fits.map((f) => [f.id, f.fit]));
    } catch {
      // No badge rather than an error: the list itself loaded.
    }
  }

  /** Adds a .gguf by path; returns the model, or null with `addError` set. */
  async add(path: string, name?: string): Promise<ModelInfo | null> {
    const trimmed = path.trim();
    if (!trimmed) {
      this.addError = new RpcError('INVALID_INPUT', 'Enter the full path of a .gguf file.');
      return null;
    }
    this.adding = true;
    this.addError = null;
    try {
      const params = name?.trim() ? { path: trimmed, name: name.trim() } : { path: trimmed };
      const model = await this.#conn.client.call('models.add', params);
      this.list = [...this.list.filter((m) => m.id !== model.id), model];
      void this.load();
      return model;
    } catch (err) {
      this.addError = err instanceof RpcError ? err : new RpcError('INTERNAL', errorMessage(err));
      return null;
    } finally {
      this.adding = false;
    }
  }

  clearAddError(): void {
    this.addError = null;
  }

  /** Removes from the library (the file stays on disk). Returns false with `error` set on failure. */
  async remove(id: string): Promise<boolean> {
    this.removing = id;
    try {
      await this.#conn.client.call('models.remove', { id });
      this.list = this.list.filter((m) => m.id !== id);
      return true;
    } catch (err) {
      this.error = `Could not remove the model: ${errorMessage(err)}`;
      return false;
    } finally {
      this.removing = null;
    }
  }
}
