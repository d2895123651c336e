/** What the engine's machine offers: loaded on demand (the System page) and on reconnect. */
import type { SystemInfo } from '../../../../contract/index.ts';
import type { ConnectionState } from './connection.svelte.ts';
import { load } from './load.ts';

export class SystemState {
  info: SystemInfo | null = $state.raw(null);
  loading = $state(false);
  error: string | null = $state(null);
  readonly #conn: ConnectionState;

  constructor(conn: ConnectionState) {
    this.#conn = conn;
    conn.whenOpen(() => void this.load());
  }

  async load(): Promise<void> {
    await load(
      this,
      () => this.#conn.client.call('system.info', {}),
      (info) => (this.info = info),
    );
  }
}
