#!/usr/bin/env node
// `npm start`: bundles electron/main.ts + preload (electron/build.mjs) and launches the Electron
// binary on the repo (package.json "main": dist/electron/main.js). The renderer must already be
// built (`npm start` runs `npm run build:renderer` first).
//
// We find the binary ourselves instead of require('electron'): that module downloads Electron
// when the binary is missing, and a start script should never download behind your back.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildElectron } from '../electron/build.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const electronDir = join(root, 'node_modules', 'electron');

function electronBinary() {
  const pathFile = join(electronDir, 'path.txt');
  const rel = existsSync(pathFile) ? readFileSync(pathFile, 'utf8').trim() : null;
  if (process.env.ELECTRON_OVERRIDE_DIST_PATH) {
    return join(process.env.ELECTRON_OVERRIDE_DIST_PATH, rel || 'electron');
  }
  if (!rel) return null;
  const full = join(electronDir, 'dist', rel);
  return existsSync(full) ? full : null;
}

if (!existsSync(join(root, 'dist', 'renderer', 'index.html'))) {
  console.error(
    'dist/renderer/index.html is missing: run `npm run build:renderer` (or `npm start`).',
  );
  process.exit(1);
}

await buildElectron();

const binary = electronBinary();
if (!binary) {
  console.error(`The Electron binary is not installed (node_modules/electron has no dist/).

It is downloaded by Electron's own install script, which was skipped or could not reach
the network. To get it:

    node node_modules/electron/install.js

(or set ELECTRON_OVERRIDE_DIST_PATH to a folder holding an Electron 45 build).

No Electron needed to use Overnight in a browser: \`npm run serve\` starts the same engine
and UI as a local web app and prints the URL to open.`);
  process.exit(1);
}

const child = spawn(binary, [root, ...process.argv.slice(2)], { stdio: 'inherit' });
child.on('close', (code, signal) => {
  if (code === null) {
    console.error(`Electron exited with signal ${signal}`);
    process.exit(1);
  }
  process.exit(code);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (child.exitCode === null) child.kill(sig);
  });
}
