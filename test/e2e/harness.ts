/**
 * E2E harness: the built renderer served by the real engine (`createEngine` + `startServer` on
 * port 0, temp data dir), driven by Debian's Chromium through playwright-core. No mock engine.
 *
 * The renderer is rebuilt when dist/renderer is missing or older than any file in renderer/ or
 * contract/. Screenshots go to test/artifacts/ (gitignored).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createEngine, type Engine } from '../../core/engine.ts';
import { startServer, type RunningServer } from '../../core/server/index.ts';

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const rendererDir = join(root, 'dist', 'renderer');
export const artifactsDir = join(root, 'test', 'artifacts');

/** Debian's package; override with CHROMIUM_PATH. Never downloaded. */
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(p) : st.mtimeMs);
  }
  return newest;
}

export async function ensureRendererBuilt(): Promise<void> {
  const index = join(rendererDir, 'index.html');
  const sources = Math.max(
    newestMtime(join(root, 'renderer')),
    newestMtime(join(root, 'contract')),
  );
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  const { build } = await import('vite');
  await build({ configFile: join(root, 'renderer', 'vite.config.ts'), logLevel: 'warn' });
}

export interface Harness {
  engine: Engine;
  server: RunningServer;
  browser: Browser;
  dataDir: string;
  /** A fresh browser context (own sessionStorage) and page, with console errors collected. */
  newPage(): Promise<{ context: BrowserContext; page: Page; errors: string[] }>;
  screenshot(page: Page, name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(): Promise<Harness> {
  await ensureRendererBuilt();
  mkdirSync(artifactsDir, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'overnight-'));
  const engine = createEngine({ dataDir });
  const server = await startServer({ engine, host: '127.0.0.1', port: 0, rendererDir });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
    ],
  });
  const contexts: BrowserContext[] = [];

  return {
    engine,
    server,
    browser,
    dataDir,
    async newPage() {
      const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
      contexts.push(context);
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
      });
      return { context, page, errors };
    },
    async screenshot(page, name) {
      await page.screenshot({ path: join(artifactsDir, `${name}.png`), fullPage: true });
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close();
      await server.close();
      await engine.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** What `useHarness` gives a suite: the harness and a scratch folder, both live between its hooks. */
export interface HarnessScope {
  readonly h: Harness;
  readonly scratch: string;
}

/**
 * Registers the suite's `before`/`after`: a harness and a temp scratch folder, both removed after.
 * Call inside `describe`; read `h` and `scratch` inside tests (they throw before `before` ran).
 */
export function useHarness(): HarnessScope {
  let h: Harness | undefined;
  let scratch: string | undefined;
  before(async () => {
    h = await startHarness();
    scratch = mkdtempSync(join(tmpdir(), 'overnight-'));
  });
  after(async () => {
    await h?.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });
  return {
    get h() {
      if (!h) throw new Error('useHarness: the harness is not started (before() has not run)');
      return h;
    },
    get scratch() {
      if (!scratch) throw new Error('useHarness: no scratch folder (before() has not run)');
      return scratch;
    },
  };
}
