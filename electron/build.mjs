// Bundles the Electron main process and preload with esbuild into dist/electron/.
//   main.ts    -> dist/electron/main.js     ESM (package.json "type": "module"; Electron >= 28
//                                            loads an ESM main). node_modules stay external:
//                                            native modules (better-sqlite3, node-llama-cpp)
//                                            must be loaded from disk, not inlined.
//   preload.ts -> dist/electron/preload.cjs CommonJS, everything inlined: a sandboxed preload
//                                            cannot import ESM nor require anything but
//                                            'electron' and a few built-ins. The contract's
//                                            method and event names are read from contract/ at
//                                            build time and inlined (__CONTRACT_NAMES__), so the
//                                            preload carries no schemas (a few KB, not zod).
//
// import.meta.url: engine modules find files relative to themselves (core/version.ts reads
// ../package.json; native/ts/binding.ts loads ../build/Release/overnight_native.node). Bundled,
// they would all share main.js's URL, so the `keepModuleUrls` plugin rewrites each module's
// `import.meta.url` to its source file's URL, derived from main.js's at run time. The packaged
// app keeps those targets (package.json, native/build/Release/*.node) at the same relative places.
//
// Usage: `node electron/build.mjs` or `import { buildElectron } from './electron/build.mjs'`.
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// Electron 45 runs Node 22 and Chromium 140.
const nodeTarget = 'node22';

const outDir = join(root, 'dist', 'electron');

/** Rewrites `import.meta.url` in our non-electron sources to the source file's own URL. */
const keepModuleUrls = {
  name: 'keep-module-urls',
  setup(b) {
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
};

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
    build({
      ...common,
      entryPoints: ['electron/main.ts'],
      outfile: 'dist/electron/main.js',
      platform: 'node',
      format: 'esm',
      target: nodeTarget,
      packages: 'external',
      plugins: [keepModuleUrls],
      // Bundled ESM has no require(); some dependencies' CJS interop expects one.
      banner: {
        js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
      },
    }),
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
  console.log('Built dist/electron/main.js and dist/electron/preload.cjs');
}
