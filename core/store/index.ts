export * from './db.ts';
export type { Migration } from './migration.ts';
export { migrations } from './migrations/index.ts';
