/**
 * The Electron bundles, without Electron (its binary cannot run here): dist/electron/main.js is
 * loaded in Node against a fake 'electron' module and hosts the real engine; the IPC handler
 * answers our window and refuses other senders; navigation, new windows and permissions are
 * refused. The preload bundle, run in a VM, exposes exactly the contract's methods plus `on`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import vm from 'node:vm';
import { events, methods } from '../../../contract/index.ts';
// @ts-expect-error: plain .mjs build script without types
import { buildElectron } from '../../../electron/build.mjs';
import { tinyModel } from '../../fixtures/tiny-model.ts';
import { root } from '../harness.ts';

const mainJs = join(root, 'dist', 'electron', 'main.js');
const preloadCjs = join(root, 'dist', 'electron', 'preload.cjs');

describe('electron bundles', () => {
  let userData: string;
  before(async () => {
    await (buildElectron as () => Promise<void>)();
    userData = mkdtempSync(join(tmpdir(), 'overnight-'));
  });
  after(() => rmSync(userData, { recursive: true, force: true }));

  test('main hosts the engine and guards IPC, navigation, windows and permissions', async () => {
    const model = await tinyModel({ type: 'q8_0' });
    const r = spawnSync(
      process.execPath,
      [join(import.meta.dirname, 'drive-main.mjs'), mainJs, model.path],
      {
        env: { ...process.env, FAKE_ELECTRON_USER_DATA: userData },
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    assert.equal(r.status, 0, `driver failed:\n${r.stderr}`);
    const report = JSON.parse(r.stdout);

    assert.equal(report.webPreferences.contextIsolation, true);
    assert.equal(report.webPreferences.sandbox, true);
    assert.equal(report.webPreferences.nodeIntegration, false);
    assert.equal(report.webPreferences.webSecurity, true);
    assert.ok(existsSync(report.webPreferences.preload), 'preload path must exist');
    assert.match(report.loadedUrl, /^file:\/\/.*\/dist\/renderer\/index\.html$/);
    assert.deepEqual(report.ipcChannels, ['overnight:rpc', 'overnight:shell.openFile']);

    assert.deepEqual(report.list, { result: [] });
    assert.equal(report.unknownMethod.error.code, 'UNKNOWN_METHOD');
    assert.equal(report.badParams.error.code, 'INVALID_INPUT');
    assert.equal(report.add.result.architecture, 'llama');
    assert.equal(report.add.result.fileType, 'Q8_0');
    assert.ok(
      report.eventsSent.includes('overnight:event models.changed'),
      report.eventsSent.join(', '),
    );
    assert.ok(existsSync(join(userData, 'overnight.db')), 'the engine stores its data in userData');

    for (const refused of [report.otherFrame, report.otherContents, report.navigatedAway]) {
      assert.equal(refused.error?.code, 'UNAUTHORIZED');
    }
    assert.equal(report.navigateAwayPrevented, true);
    assert.equal(report.navigateHomePrevented, false);
    assert.deepEqual(report.windowOpen, { action: 'deny' });
    assert.deepEqual(report.openedExternally, ['https://github.com/']);
    assert.equal(report.permission, false);
    assert.deepEqual(report.quit, { preventedFirst: true, quitCalls: 1 });
  });

  test('the preload exposes exactly the contract methods and on(), and never ipcRenderer', async () => {
    const exposed: Record<string, Record<string, unknown>> = {};
    const invoked: unknown[][] = [];
    const listeners: [string, (...a: unknown[]) => void][] = [];
    const fakeElectron = {
      webUtils: { getPathForFile: (f: { name: string }) => `/dropped/${f.name}` },
      contextBridge: {
        exposeInMainWorld: (key: string, api: Record<string, unknown>) => (exposed[key] = api),
      },
      ipcRenderer: {
        invoke: async (...args: unknown[]) => {
          invoked.push(args);
          return { result: 'ok' };
        },
        on: (channel: string, fn: (...a: unknown[]) => void) => listeners.push([channel, fn]),
        removeListener: (_c: string, fn: unknown) => {
          const i = listeners.findIndex(([, f]) => f === fn);
          if (i >= 0) listeners.splice(i, 1);
        },
      },
    };
    const sandboxRequire = (id: string) => {
      if (id === 'electron') return fakeElectron;
      throw new Error(`a sandboxed preload cannot require "${id}"`);
    };
    const module = { exports: {} };
    vm.runInNewContext(readFileSync(preloadCjs, 'utf8'), {
      require: sandboxRequire,
      module,
      exports: module.exports,
    });

    assert.deepEqual(Object.keys(exposed).sort(), ['overnight', 'overnightShell']);
    const api = exposed.overnight!;
    assert.deepEqual(Object.keys(api).sort(), [...Object.keys(methods), 'on'].sort());
    assert.deepEqual(Object.keys(exposed.overnightShell!), ['openFile', 'pathForFile']);
    const pathForFile = exposed.overnightShell!.pathForFile as (f: { name: string }) => string;
    assert.equal(pathForFile({ name: 'data.jsonl' }), '/dropped/data.jsonl');
    for (const value of Object.values(api)) assert.equal(typeof value, 'function');

    assert.deepEqual(await (api['models.list'] as (p: unknown) => Promise<unknown>)({}), {
      result: 'ok',
    });
    assert.deepEqual(invoked[0], ['overnight:rpc', 'models.list', {}]);

    const on = api.on as (e: string, cb: (d: unknown) => void) => () => void;
    assert.throws(() => on('not.an.event', () => {}), /Unknown event/);
    const got: unknown[] = [];
    const eventName = Object.keys(events)[0]!;
    const off = on(eventName, (d) => got.push(d));
    for (const [, fn] of listeners) fn({}, eventName, { ids: ['x'] });
    for (const [, fn] of listeners) fn({}, 'other.event', {});
    off();
    assert.equal(listeners.length, 0);
    assert.deepEqual(got, [{ ids: ['x'] }]);
  });
});
