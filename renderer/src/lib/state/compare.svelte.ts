/**
 * Compare (chat) as the UI sees it: saved conversations, the open one, and the text each column
 * is streaming for the turn being answered (compare.token events) until its stored answer
 * arrives (compare.answer).
 */
import type {
  ChatMemory,
  Conversation,
  ConversationSummary,
  Sampling,
  VariantInput,
  VariantOption,
} from '../../../../contract/index.ts';
import { RpcError, errorMessage } from '../rpc/index.ts';
import type { ConnectionState } from './connection.svelte.ts';

export interface LiveAnswer {
  text: string;
  tokens: number;
  tokensPerSecond: number;
}

export class CompareState {
  list: ConversationSummary[] = $state.raw([]);
  open: Conversation | null = $state.raw(null);
  openError: string | null = $state(null);
  /** Streaming text of the open conversation's current turn, by column. */
  live: Record<number, LiveAnswer> = $state({});
  liveTurn = $state(-1);
  memory: ChatMemory | null = $state.raw(null);
  /** The last failed action; `code` tells OUT_OF_MEMORY (offer the CPU) apart. */
  actionError: RpcError | null = $state.raw(null);

  readonly #conn: ConnectionState;

  constructor(conn: ConnectionState) {
    this.#conn = conn;
    conn.client.on('compare.changed', ({ id }) => {
      void this.loadList();
      if (this.open?.id === id) void this.reload();
    });
    conn.client.on('compare.token', (t) => {
      if (t.id !== this.open?.id) return;
      if (t.turn !== this.liveTurn) {
        this.liveTurn = t.turn;
        this.live = {};
      }
      const cur = this.live[t.column];
      this.live[t.column] = {
        text: (cur?.text ?? '') + t.delta,
        tokens: t.tokens,
        tokensPerSecond: t.tokensPerSecond,
      };
    });
    conn.client.on('compare.answer', ({ id, turn, answer }) => {
      const c = this.open;
      if (!c || c.id !== id) return;
      this.open = {
        ...c,
        turnList: c.turnList.map((t) =>
          t.index === turn
            ? {
                ...t,
                answers: [...t.answers.filter((a) => a.column !== answer.column), answer],
              }
            : t,
        ),
      };
    });
    conn.whenOpen(() => void this.loadList());
  }

  get client() {
    return this.#conn.client;
  }

  async loadList(): Promise<void> {
    try {
      this.list = await this.#conn.client.call('compare.list', {});
    } catch {
      // Shown as an empty list; the next change or reconnect tries again.
    }
  }

  async show(id: string): Promise<void> {
    this.openError = null;
    if (this.open?.id !== id) {
      this.open = null;
      this.live = {};
      this.liveTurn = -1;
      this.memory = null;
    }
    try {
      this.open = await this.#conn.client.call('compare.show', { id });
      void this.loadMemory();
    } catch (err) {
      this.openError = errorMessage(err);
    }
  }

  async reload(): Promise<void> {
    const id = this.open?.id;
    if (!id) return;
    try {
      const c = await this.#conn.client.call('compare.show', { id });
      if (this.open?.id !== id) return;
      this.open = c;
      if (!c.generating) {
        this.live = {};
        this.liveTurn = -1;
      }
    } catch (err) {
      this.openError = errorMessage(err);
    }
  }

  async loadMemory(): Promise<void> {
    const c = this.open;
    if (!c) return;
    try {
      this.memory = await this.#conn.client.call('compare.memory', {
        modelId: c.modelId,
        columns: c.columns.length,
      });
    } catch {
      this.memory = null;
    }
  }

  variants(modelId: string): Promise<VariantOption[]> {
    return this.#conn.client.call('compare.variants', { modelId });
  }

  async create(p: {
    modelId: string;
    variants: VariantInput[];
    systemPrompt: string;
    sampling?: Partial<Sampling>;
  }): Promise<Conversation> {
    const c = await this.#conn.client.call('compare.create', p);
    this.open = c;
    void this.loadList();
    return c;
  }

  /** Runs an action on the open conversation; keeps its error for the page. */
  async #act(fn: (id: string) => Promise<Conversation>): Promise<boolean> {
    const c = this.open;
    if (!c) return false;
    this.actionError = null;
    try {
      const next = await fn(c.id);
      if (this.open?.id === next.id) this.open = next;
      return true;
    } catch (err) {
      this.actionError =
        err instanceof RpcError ? err : new RpcError('INTERNAL', errorMessage(err));
      return false;
    }
  }

  #startTurn(turn: number): void {
    this.liveTurn = turn;
    this.live = {};
  }

  send(text: string): Promise<boolean> {
    this.#startTurn(this.open?.turnList.length ?? 0);
    return this.#act((id) => this.#conn.client.call('compare.send', { id, text }));
  }
  editLast(text: string): Promise<boolean> {
    this.#startTurn((this.open?.turnList.length ?? 1) - 1);
    return this.#act((id) => this.#conn.client.call('compare.editLast', { id, text }));
  }
  regenerate(): Promise<boolean> {
    this.#startTurn((this.open?.turnList.length ?? 1) - 1);
    return this.#act((id) => this.#conn.client.call('compare.regenerate', { id }));
  }
  stop(): Promise<boolean> {
    return this.#act((id) => this.#conn.client.call('compare.stop', { id }));
  }
  clear(): Promise<boolean> {
    return this.#act((id) => this.#conn.client.call('compare.clear', { id }));
  }
  update(patch: {
    systemPrompt?: string;
    sampling?: Partial<Sampling>;
    device?: 'auto' | 'gpu' | 'cpu';
  }): Promise<boolean> {
    return this.#act((id) => this.#conn.client.call('compare.update', { id, ...patch }));
  }

  async remove(id: string): Promise<void> {
    await this.#conn.client.call('compare.delete', { id });
    if (this.open?.id === id) this.open = null;
    await this.loadList();
  }

  markdown(id: string): Promise<{ markdown: string; fileName: string }> {
    return this.#conn.client.call('compare.markdown', { id });
  }
}
