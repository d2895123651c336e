/**
 * Every schema migration, in order. To add one: write `NNN-name.ts` exporting `migration`
 * (version NNN = the next number) and add one line below.
 */
import type { Migration } from '../migration.ts';
import { migration as m001 } from './001-models.ts';
import { migration as m002 } from './002-runs.ts';

export const migrations: readonly Migration[] = [
  m001,
  m002,
];
