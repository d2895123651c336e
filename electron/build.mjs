// The one build of everything the app runs from dist/ (no TypeScript sources, no tsx at run time):
//   electron/main.ts       -> dist/electron/main.js     ESM (package.json "type": "module"; Electron
//                                                     >= 28 loads an ESM main). node_modules stay
//                                                     external: native modules (better-sqlite3,
//                                                     node-llama-cpp) must be loaded from disk.
//   electron/preload.ts    -> dist/electron/preload.cjs CommonJS, everything inlined: a sandboxed
//                                                     preload cannot import ESM nor require anything
//                                                     but 'electron' and a few built-ins. The
//                                                     contract's method and event names are read
//                                                     from contract/ at build time and inlined
//                                                     (__CONTRACT_NAMES__), so the preload carries no
//                                                     schemas (a few KB, not zod).
//   core/training/worker.ts -> dist/training/worker.js ESM, node_modules external: the training
//                                                     child process (core/training/trainer-process.ts
//                                                     forks it). From source it runs through tsx.
// The renderer is built by vite into dist/renderer (`npm run build` runs both).
//
// Which worker the engine forks: every Node bundle gets a banner line defining
// `__OVERNIGHT_WORKER_URL__` (the bundled worker's URL, relative to the bundle's own URL);
// trainer-process.ts forks that file with plain Node when the constant exists, and worker.ts
// through tsx when it runs from source (where the constant is undefined).
//
// import.meta.url: engine modules find files relative to themselves (core/version.ts reads
// ../package.json; native/ts/binding.ts loads ../build/Release/overnight_native.node). Bundled,
// they would all share the bundle's URL, so the `keepModuleUrls` plugin rewrites each module's
// `import.meta.url` to its source file's URL, derived from the bundle's at run time. The packaged
// app keeps those targets (package.json, native/build/Release/*.node) at the same relative places
// (build/electron-builder.yml "files"); test/integration/built-layout.test.ts trains from a copy
// of exactly those files.
//
// Usage: `node electron/build.mjs [--minify]` or `import { buildElectron } from './electron/build.mjs'`.
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// Electron 45 runs Node 22 and Chromium 140.
const nodeTarget = 'node22';

/** The bundled training worker, relative to the repository root. */
export const WORKER_OUT = 'dist/training/worker.js';
/** The bundled merge worker (merged-model exports, core/export/merge-process.ts). */
export const MERGE_WORKER_OUT = 'dist/export/merge-worker.js';

/**
 * Rewrites `import.meta.url` in our non-electron sources to the source file's own URL, as seen
 * from a bundle written to `outfile` (relative to the root).
 */
const keepModuleUrls = (outfile) => ({
  name: 'keep-module-urls',
  setup(b) {
    const outDir = join(root, dirname(outfile));
    b.onLoad({ filter: /\.(ts|mts|js|mjs)$/ }, async (args) => {
      const rel = relative(root, args.path);
      if (rel.startsWith('..') || rel.startsWith('node_modules') || rel.startsWith('electron'))
        return undefined;
      const source = await readFile(args.path, 'utf8');
      if (!source.includes('import.meta.url')) return undefined;
      const fromOut = relative(outDir, args.path).split(sep).join('/');
      const own = `new URL(${JSON.stringify(fromOut)}, import.meta.url).href`;
      return {
        contents: source.replaceAll('import.meta.url', own),
        loader: args.path.endsWith('ts') ? 'ts' : 'js',
      };
    });
  },
});

/**
 * Banner of a Node ESM bundle: a `require` for dependencies' CJS interop (bundled ESM has none)
 * and the URL of the bundled worker, which trainer-process.ts forks instead of worker.ts + tsx.
 */
function nodeBanner(outfile) {
  const toWorker = relative(dirname(join(root, outfile)), join(root, WORKER_OUT))
    .split(sep)
    .join('/');
  const toMergeWorker = relative(dirname(join(root, outfile)), join(root, MERGE_WORKER_OUT))
    .split(sep)
    .join('/');
  return [
    "import { createRequire as __createRequire } from 'node:module';",
    'const require = __createRequire(import.meta.url);',
    `const __OVERNIGHT_WORKER_URL__ = new URL(${JSON.stringify(toWorker)}, import.meta.url).href;`,
    `const __OVERNIGHT_MERGE_WORKER_URL__ = new URL(${JSON.stringify(toMergeWorker)}, import.meta.url).href;`,
  ].join(' ');
}

/** A Node ESM bundle of one of our entry points, node_modules external. */
function nodeBundle(common, entry, outfile) {
  return build({
    ...common,
    entryPoints: [entry],
    outfile,
    platform: 'node',
    format: 'esm',
    target: nodeTarget,
    packages: 'external',
    plugins: [keepModuleUrls(outfile)],
    banner: { js: nodeBanner(outfile) },
  });
}

/** Method and event names of the contract, by bundling and importing contract/index.ts. */
async function contractNames() {
  const out = await build({
    absWorkingDir: root,
    entryPoints: ['contract/index.ts'],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    packages: 'external',
    outfile: 'contract.mjs',
    logLevel: 'warning',
  });
  const file = out.outputFiles[0];
  if (!file) throw new Error('bundling contract/index.ts produced nothing');
  // Written next to node_modules so the bundle's `import "zod"` resolves.
  const tmp = join(root, 'dist', `.contract-${process.pid}.mjs`);
  await mkdir(dirname(tmp), { recursive: true });
  await writeFile(tmp, file.text);
  try {
    const contract = await import(pathToFileURL(tmp).href);
    return { methods: Object.keys(contract.methods), events: Object.keys(contract.events) };
  } finally {
    await rm(tmp, { force: true });
  }
}

export async function buildElectron({ minify = false } = {}) {
  const common = {
    absWorkingDir: root,
    bundle: true,
    sourcemap: true,
    minify,
    logLevel: 'warning',
  };
  const names = await contractNames();
  await Promise.all([
    nodeBundle(common, 'electron/main.ts', 'dist/electron/main.js'),
    nodeBundle(common, 'core/training/worker.ts', WORKER_OUT),
    nodeBundle(common, 'core/export/merge-worker.ts', MERGE_WORKER_OUT),
    build({
      ...common,
      entryPoints: ['electron/preload.ts'],
      outfile: 'dist/electron/preload.cjs',
      platform: 'node',
      format: 'cjs',
      target: ['chrome140', nodeTarget],
      external: ['electron'],
      define: { __CONTRACT_NAMES__: JSON.stringify(names) },
    }),
  ]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildElectron({ minify: process.argv.includes('--minify') });
  console.log(`Built dist/electron/main.js, dist/electron/preload.cjs and ${WORKER_OUT}`);
}
