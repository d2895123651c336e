/**
 * The contract: every request (`domain.verb`) and event (`domain.noun`) between a shell
 * (Electron renderer, browser, CLI) and the engine. One schema each; types are derived.
 * Imports nothing of ours but its own files, so every side can depend on it.
 * To add a domain: write `contract/<domain>.ts` with `<domain>Methods` / `<domain>Events`
 * and spread them below.
 */
import type { z } from 'zod';
import { compareEvents, compareMethods } from './compare.ts';
import { datasetsEvents, datasetsMethods } from './datasets.ts';
import { evalEvents, evalMethods } from './eval.ts';
import { exportEvents, exportMethods } from './export.ts';
import { hubEvents, hubMethods } from './hub.ts';
import { modelsEvents, modelsMethods } from './models.ts';
import { runsEvents, runsMethods } from './runs.ts';
import { systemMethods } from './system.ts';

export * from './errors.ts';
export * from './compare.ts';
export * from './eval.ts';
export * from './export.ts';
export * from './define.ts';
export * from './format.ts';
export * from './datasets.ts';
export * from './hub.ts';
export * from './models.ts';
export * from './runs.ts';
export * from './system.ts';
export * from './wire.ts';

export const methods = {
  ...modelsMethods,
  ...systemMethods,
  ...runsMethods,
  ...datasetsMethods,
  ...hubMethods,
  ...compareMethods,
  ...evalMethods,
  ...exportMethods,
} as const;

export const events = {
  ...modelsEvents,
  ...runsEvents,
  ...datasetsEvents,
  ...hubEvents,
  ...compareEvents,
  ...evalEvents,
  ...exportEvents,
} as const;

export type Methods = typeof methods;
export type MethodName = keyof Methods;
export type MethodInput<M extends MethodName> = z.input<Methods[M]['input']>;
export type MethodParams<M extends MethodName> = z.output<Methods[M]['input']>;
export type MethodOutput<M extends MethodName> = z.output<Methods[M]['output']>;

export type Events = typeof events;
export type EventName = keyof Events;
export type EventPayload<E extends EventName> = z.output<Events[E]['payload']>;

export function isMethodName(name: string): name is MethodName {
  return Object.hasOwn(methods, name);
}
export function isEventName(name: string): name is EventName {
  return Object.hasOwn(events, name);
}

/** What every client (renderer over IPC or WebSocket, tests in memory) offers. */
export interface RpcClient {
  call<M extends MethodName>(method: M, params: MethodInput<M>): Promise<MethodOutput<M>>;
  on<E extends EventName>(event: E, handler: (payload: EventPayload<E>) => void): () => void;
}
