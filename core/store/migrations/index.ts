/**
 * Every schema migration, in order. To add one: write `NNN-name.ts` exporting `migration`
 * (version NNN = the next number) and add one line below.
 */
import type { Migration } from '../migration.ts';
import { migration as m001 } from './001-models.ts';
import { migration as m002 } from './002-runs.ts';
import { migration as m003 } from './003-datasets.ts';
import { migration as m004 } from './004-metrics-grad-norm.ts';
import { migration as m005 } from './005-compare.ts';
import { migration as m006 } from './006-eval.ts';

// One line per migration, so adding one is a one-line change:
// prettier-ignore
export const migrations: readonly Migration[] = [
  m001,
  m002,
  m003,
  m004,
  m005,
  m006,
];
