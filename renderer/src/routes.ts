/**
 * The navigation table: one entry per page, in sidebar order. A later page (Datasets, Runs, Chat)
 * is one more entry here.
 */
import type { Component } from 'svelte';
import type { IconName } from './components/icons.ts';
import ComparePage from './pages/ComparePage.svelte';
import DatasetsPage from './pages/DatasetsPage.svelte';
import EvaluatePage from './pages/EvaluatePage.svelte';
import ExportPage from './pages/ExportPage.svelte';
import HubPage from './pages/HubPage.svelte';
import ModelsPage from './pages/ModelsPage.svelte';
import RunsPage from './pages/RunsPage.svelte';
import SystemPage from './pages/SystemPage.svelte';

export interface PageProps {
  /** Path segments after the page id, e.g. ["<model id>"] for #/models/<model id>. */
  params: string[];
}

export interface Route {
  id: string;
  label: string;
  icon: IconName;
  component: Component<PageProps>;
}

export const routes: Route[] = [
  { id: 'models', label: 'Models', icon: 'cube', component: ModelsPage },
  { id: 'hub', label: 'Hub', icon: 'download', component: HubPage },
  { id: 'datasets', label: 'Datasets', icon: 'file', component: DatasetsPage },
  { id: 'runs', label: 'Runs', icon: 'chart', component: RunsPage },
  { id: 'compare', label: 'Compare', icon: 'chat', component: ComparePage },
  { id: 'evaluate', label: 'Evaluate', icon: 'check', component: EvaluatePage },
  { id: 'export', label: 'Export', icon: 'folder', component: ExportPage },
  { id: 'system', label: 'System', icon: 'chip', component: SystemPage },
];

export const defaultRoute: Route = routes[0]!;

export function findRoute(id: string): Route | undefined {
  return id === '' ? defaultRoute : routes.find((r) => r.id === id);
}
