/** The app's state root, shared with components through context. */
import { getContext, setContext } from 'svelte';
import { CompareState } from './compare.svelte.ts';
import { ConnectionState } from './connection.svelte.ts';
import { DatasetsState } from './datasets.svelte.ts';
import { HubState } from './hub.svelte.ts';
import { ModelsState } from './models.svelte.ts';
import { Router } from './router.svelte.ts';
import { RunsState } from './runs.svelte.ts';
import { SystemState } from './system.svelte.ts';

export class AppState {
  readonly connection = new ConnectionState();
  readonly router = new Router();
  readonly models = new ModelsState(this.connection);
  readonly datasets = new DatasetsState(this.connection);
  readonly system = new SystemState(this.connection);
  readonly runs = new RunsState(this.connection);
  readonly hub = new HubState(this.connection);
  readonly compare = new CompareState(this.connection);
}

const key = Symbol('app');

export function provideApp(app: AppState): void {
  setContext(key, app);
}

export function useApp(): AppState {
  const app = getContext<AppState | undefined>(key);
  if (!app) throw new Error('useApp() outside <App>');
  return app;
}
