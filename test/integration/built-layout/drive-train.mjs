// Child process for built-layout.test.ts: starts a copy of the packaged app's main bundle
// (<layout>/dist/electron/main.js) against the fake 'electron' module of the Electron e2e test,
// creates a run through the IPC handler exactly as the renderer would, follows it to the end,
// quits (the engine closes) and prints one JSON report on stdout.
//   node drive-train.mjs <main.js> <config.json>   (FAKE_ELECTRON_USER_DATA=<dir>)
// Only the fake electron module comes from the checkout; everything main.js imports resolves
// from the layout it sits in.
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const electronTests = new URL('../../e2e/electron/', import.meta.url);
register(new URL('loader.mjs', electronTests).href, import.meta.url);
const { state } = await import(new URL('fake-electron.mjs', electronTests).href);
const [mainJs, configPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
await import(pathToFileURL(mainJs).href);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (cond, ms, what) => {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
};
await until(() => state.windows.length === 1, 30_000, 'main to open its window');

const wc = state.windows[0].webContents;
const rpc = state.ipcHandlers.get('overnight:rpc');
const trusted = { sender: wc, senderFrame: wc.mainFrame };
const call = async (method, params) => {
  const r = await rpc(trusted, method, params);
  if (r.error) throw new Error(`${method}: ${r.error.code}: ${r.error.message}`);
  return r.result;
};

const system = await call('system.info', {});
const created = await call('runs.create', { config, name: 'built layout' });
const terminal = new Set(['completed', 'failed', 'cancelled', 'interrupted', 'paused']);
let detail;
await until(
  async () => {
    detail = await call('runs.show', { id: created.id });
    return terminal.has(detail.run.state);
  },
  180_000,
  'the run to finish',
);
const metrics = await call('runs.metrics', { id: created.id });
const stepEvents = wc.sent.filter(
  ([channel, e]) => channel === 'overnight:event' && e === 'runs.step',
);

let prevented = false;
for (const fn of state.appHandlers.get('will-quit') ?? [])
  fn({ preventDefault: () => (prevented = true) });
await until(() => state.quitCalls > 0, 30_000, 'the engine to close');

process.stdout.write(
  JSON.stringify({
    trainerBackends: system.trainerBackends,
    run: detail.run,
    checkpoints: detail.checkpoints.length,
    metricSteps: metrics.map((m) => m.step),
    eventSteps: stepEvents.flatMap(([, , data]) => data.metrics.map((m) => m.step)),
    quitPrevented: prevented,
  }),
);
