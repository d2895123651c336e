/**
 * The packaged app trains. `buildElectron()` (the build `npm run build` runs), then a temporary
 * directory gets what the packaged app holds and nothing else:
 *   - the app's files, chosen by the `files` globs of build/electron-builder.yml (dist/ bundles,
 *     package.json, the native addon, resources);
 *   - node_modules with only the production dependency closure (package-lock entries without
 *     "dev", as `npm ci --omit=dev` installs them), hard-linked from the checkout.
 * No core/ sources, no .ts file, tsx not resolvable. From there the real main bundle starts
 * against a fake 'electron' module, a run is created over IPC, and the real trainer (the bundled
 * worker, forked with plain Node) trains a tiny generated model to the end and writes its adapter.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { after, before, describe, test } from 'node:test';
// @ts-expect-error: plain .mjs build script without types
import { buildElectron } from '../../electron/build.mjs';
import { trainerBackends } from '../../core/system/trainer-backends.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const root = resolve(import.meta.dirname, '..', '..');
const driver = join(import.meta.dirname, 'built-layout', 'drive-train.mjs');

/** The `files:` list of build/electron-builder.yml (plain `- item` lines under the key). */
function builderFiles(yml: string): string[] {
  const lines = yml.split('\n');
  const start = lines.findIndex((l) => /^files:\s*$/.test(l));
  assert.ok(start >= 0, 'build/electron-builder.yml has a files: list');
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break; // next top-level key
    const m = /^\s+-\s+(.+?)\s*$/.exec(line);
    if (m?.[1]) out.push(m[1].replace(/^'(.*)'$/, '$1'));
  }
  return out;
}

/** electron-builder's glob subset we use: `**` any depth, `*` within one path segment. */
function globRegex(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else re += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** Checkout files (relative to root) that the electron-builder `files` globs ship. */
function shippedFiles(globs: string[]): string[] {
  const include = globs.filter((g) => !g.startsWith('!')).map(globRegex);
  const exclude = globs.filter((g) => g.startsWith('!')).map((g) => globRegex(g.slice(1)));
  const bases = new Set(
    globs
      .filter((g) => !g.startsWith('!'))
      .map((g) => g.split('/').filter((_, i, a) => !a.slice(0, i + 1).some((s) => s.includes('*'))))
      .map((segments) => segments.join('/')),
  );
  const out = new Set<string>();
  for (const base of bases) {
    const abs = join(root, base);
    if (!existsSync(abs)) continue;
    const files = statSync(abs).isDirectory() ? walk(abs) : [abs];
    for (const f of files) {
      const rel = relative(root, f).split(sep).join('/');
      if (include.some((r) => r.test(rel)) && !exclude.some((r) => r.test(rel))) out.add(rel);
    }
  }
  return [...out].sort();
}

/** node_modules/... paths `npm ci --omit=dev` installs (present in this checkout). */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; link?: boolean }>;
  };
  return Object.entries(lock.packages)
    .filter(([path, p]) => path.startsWith('node_modules/') && !p.dev && !p.link)
    .map(([path]) => path)
    .filter((path) => existsSync(join(root, path)));
}

/** Hard-links (copies across devices) a file into the layout. */
function place(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/** One package directory without its nested node_modules (those are lock entries of their own). */
function placePackage(from: string, to: string, top = true): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    if (top && e.name === 'node_modules') continue;
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isSymbolicLink()) {
      const target = readlinkSync(src);
      assert.ok(!target.startsWith('/'), `${src} links outside its package (${target})`);
      symlinkSync(target, dst);
    } else if (e.isDirectory()) placePackage(src, dst, false);
    else place(src, dst);
  }
}

describe('the built layout (what electron-builder packages) trains', { timeout: 900_000 }, () => {
  let layout: string;
  let scratch: string;
  let shipped: string[];

  before(async () => {
    await (buildElectron as () => Promise<void>)();
    layout = mkdtempSync(join(tmpdir(), 'overnight-app-'));
    scratch = mkdtempSync(join(tmpdir(), 'overnight-'));
    shipped = shippedFiles(
      builderFiles(readFileSync(join(root, 'build', 'electron-builder.yml'), 'utf8')),
    );
    for (const rel of shipped) place(join(root, rel), join(layout, rel));
    for (const pkg of productionPackages()) placePackage(join(root, pkg), join(layout, pkg));
  });
  after(() => {
    for (const d of [layout, scratch]) if (d) rmSync(d, { recursive: true, force: true });
  });

  test('the layout has the bundles and the addon, and no TypeScript sources nor tsx', () => {
    for (const want of [
      'package.json',
      'dist/electron/main.js',
      'dist/electron/preload.cjs',
      'dist/training/worker.js',
      'dist/export/merge-worker.js',
      'native/build/Release/overnight_native.node',
    ]) {
      assert.ok(shipped.includes(want), `electron-builder's files list ships ${want}`);
    }
    assert.ok(!existsSync(join(layout, 'core')), 'no core/ sources');
    const ours = walk(layout).filter((f) => !relative(layout, f).startsWith('node_modules'));
    const ts = ours.filter((f) => /\.(ts|mts|cts)$/.test(f));
    assert.deepEqual(ts, [], 'no TypeScript file ships outside node_modules');
    assert.ok(
      !existsSync(join(layout, 'node_modules', 'tsx')),
      'tsx is not a production dependency',
    );
    const requireFromApp = createRequire(join(layout, 'dist', 'electron', 'main.js'));
    assert.throws(
      () => requireFromApp.resolve('tsx'),
      /Cannot find module/,
      'tsx must not resolve',
    );
    assert.ok(
      lstatSync(join(layout, 'node_modules', 'zod')).isDirectory(),
      'production deps are there',
    );
  });

  test('a run created over IPC trains a tiny model to the end with the bundled worker', async () => {
    const model = await tinyModel({ type: 'q8_0' });
    const dataset = join(scratch, 'chat.jsonl');
    writeFileSync(
      dataset,
      Array.from({ length: 24 }, (_, i) =>
        JSON.stringify({
          messages: [
            { role: 'user', content: `Say ${i}` },
            { role: 'assistant', content: `${i} ${i} ${i}` },
          ],
        }),
      ).join('\n') + '\n',
    );
    const maxSteps = 4;
    const configPath = join(scratch, 'run.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        model: model.path,
        dataset,
        preset: 'quick',
        loraRank: 4,
        loraAlpha: 8,
        loraTargets: ['attn_q', 'attn_v'],
        learningRate: 1e-3,
        warmupSteps: 0,
        effectiveBatch: 2,
        sequenceLength: 64,
        maxSteps,
        checkpointInterval: 2,
        // Training only (what this test is about); validation passes are tested elsewhere.
        validationShare: 0,
        earlyStopping: false,
        finalAdapter: 'last',
        threads: 2,
        maxRetries: 0,
      }),
    );
    const userData = join(scratch, 'userData');
    mkdirSync(userData);
    const env: NodeJS.ProcessEnv = { ...process.env, FAKE_ELECTRON_USER_DATA: userData };
    delete env.NODE_OPTIONS; // nothing from the test runner (tsx) may reach the app
    const mainJs = join(layout, 'dist', 'electron', 'main.js');
    const child = spawn(process.execPath, [driver, mainJs, configPath], {
      cwd: layout,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    assert.equal(code, 0, `the driver failed:\n${stderr.slice(-4000)}`);
    const report = JSON.parse(stdout) as {
      run: {
        state: string;
        stateReason: string | null;
        step: number;
        adapterPath: string | null;
        retries: number;
      };
      checkpoints: number;
      metricSteps: number[];
      eventSteps: number[];
      trainerBackends: string[];
      quitPrevented: boolean;
    };
    assert.deepEqual(
      report.trainerBackends,
      trainerBackends(),
      'the app reports the backends the native build has (native/build/build-info.json ships)',
    );
    assert.equal(
      report.run.state,
      'completed',
      `the run ends completed (${report.run.stateReason}); trainer output:\n${stderr.slice(-4000)}`,
    );
    assert.equal(report.run.retries, 0);
    assert.equal(report.run.step, maxSteps);
    assert.deepEqual(
      report.metricSteps,
      Array.from({ length: maxSteps }, (_, i) => i + 1),
      'one metric row per step',
    );
    assert.deepEqual(report.eventSteps, report.metricSteps, 'runs.step events reached the window');
    assert.ok(report.checkpoints >= 1, 'checkpoints were written');
    assert.ok(report.run.adapterPath, 'the run has an adapter');
    assert.ok(
      report.run.adapterPath.startsWith(userData),
      `the adapter ${report.run.adapterPath} is in the app's data dir`,
    );
    const adapter = readFileSync(report.run.adapterPath);
    assert.equal(adapter.subarray(0, 4).toString('latin1'), 'GGUF', 'the adapter is a GGUF file');
    assert.equal(report.quitPrevented, true, 'quitting closed the engine first');
  });
});
