#!/usr/bin/env node
// The one test entry: `npm test` runs every tier in order; `node scripts/test.mjs <tier>` runs one.
// Tiers: typecheck, lint, format (prettier --check), unit, native, integration, e2e. Tests are node:test files run through tsx.
// Unit tests live beside their sources (*.test.ts under contract/, core/, native/ts) or in test/unit;
// native tests in test/native; integration in test/integration; e2e in test/e2e.
// Native, integration and e2e files run one at a time: they share 2 cores and real processes.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const skipDirs = new Set([
  'node_modules',
  'dist',
  'build',
  'build-vulkan',
  'llama.cpp',
  '.cache',
  'artifacts',
  '.git',
]);

function findTests(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    if (skipDirs.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out.sort();
}

const tiers = {
  unit: () => [
    ...['contract', 'core', 'native/ts', 'test/unit', 'test/fixtures', 'renderer/src/lib'].flatMap(
      (d) => findTests(join(root, d)),
    ),
  ],
  native: () => findTests(join(root, 'test/native')),
  integration: () => findTests(join(root, 'test/integration')),
  e2e: () => findTests(join(root, 'test/e2e')),
};

function run(cmd, args) {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
  return r.status ?? 1;
}

function runTier(tier) {
  if (tier === 'typecheck') return run('node', ['scripts/typecheck.mjs']);
  if (tier === 'lint') return run('npx', ['eslint', '.']);
  if (tier === 'format') return run('npx', ['prettier', '--check', '.']);
  const files = tiers[tier]();
  if (files.length === 0) {
    console.log(`(no ${tier} tests)`);
    return 0;
  }
  const serial = tier !== 'unit';
  return run('node', [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    ...(serial ? ['--test-concurrency=1'] : []),
    ...files,
  ]);
}

const wanted = process.argv[2] ?? 'all';
const order =
  wanted === 'all'
    ? ['typecheck', 'lint', 'format', 'unit', 'native', 'integration', 'e2e']
    : [wanted];
let failed = [];
for (const t of order) if (runTier(t) !== 0) failed.push(t);
if (failed.length) {
  console.error(`\nFailed tiers: ${failed.join(', ')}`);
  process.exit(1);
}
console.log('\nAll tiers passed.');
