#!/usr/bin/env node
// Typechecks each runtime with its own tsconfig: Node code (contract, core, native, test),
// the Electron glue (Electron's own types), the renderer's unit tests (DOM + node:test), and the
// renderer (DOM only, via svelte-check).
import { spawnSync } from 'node:child_process';
const steps = [
  ['npx', ['tsc', '-p', 'tsconfig.json']],
  ['npx', ['tsc', '-p', 'electron/tsconfig.json']],
  ['npx', ['tsc', '-p', 'renderer/tsconfig.tests.json']],
  ['npx', ['svelte-check', '--tsconfig', 'renderer/tsconfig.json', '--fail-on-warnings']],
];
let bad = 0;
for (const [cmd, args] of steps) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) bad++;
}
process.exit(bad ? 1 : 0);
