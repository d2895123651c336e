// Child process for main-bundle.test.ts: loads dist/electron/main.js against fake-electron.mjs,
// drives what main registered, and prints one JSON report on stdout.
//   node drive-main.mjs <main.js> <model.gguf>   (FAKE_ELECTRON_USER_DATA=<dir>)
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

register('./loader.mjs', import.meta.url);
const { state } = await import('./fake-electron.mjs');
const [mainJs, modelPath] = process.argv.slice(2);
await import(pathToFileURL(mainJs).href);

const until = async (cond) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
  if (!cond()) throw new Error('timed out waiting for main to start');
};
await until(() => state.windows.length === 1);

const win = state.windows[0];
const wc = win.webContents;
const rpc = state.ipcHandlers.get('overnight:rpc');
const trusted = { sender: wc, senderFrame: wc.mainFrame };
const report = {};

report.webPreferences = win.options.webPreferences;
report.loadedUrl = wc.mainFrame.url;
report.ipcChannels = [...state.ipcHandlers.keys()].sort();

report.list = await rpc(trusted, 'models.list', {});
report.unknownMethod = await rpc(trusted, 'fs.readFile', { path: '/etc/passwd' });
report.badParams = await rpc(trusted, 'models.add', { path: 42 });
report.add = await rpc(trusted, 'models.add', { path: modelPath });
await new Promise((r) => setTimeout(r, 50));
report.eventsSent = wc.sent.map(([channel, event]) => `${channel} ${event}`);

report.otherFrame = await rpc(
  { sender: wc, senderFrame: { url: wc.mainFrame.url } },
  'models.list',
  {},
);
report.otherContents = await rpc(
  { sender: { id: 'other' }, senderFrame: wc.mainFrame },
  'models.list',
  {},
);
const realUrl = wc.mainFrame.url;
wc.mainFrame.url = 'https://evil.example/';
report.navigatedAway = await rpc(trusted, 'models.list', {});
wc.mainFrame.url = realUrl;

const navigate = (url) => {
  let prevented = false;
  wc.handlers.get('will-navigate')({ preventDefault: () => (prevented = true) }, url);
  return prevented;
};
report.navigateAwayPrevented = navigate('https://evil.example/');
report.navigateHomePrevented = navigate(realUrl);
report.windowOpen = wc.windowOpenHandler({ url: 'https://github.com/' });
report.openedExternally = state.opened;
report.permission = await new Promise((r) => state.permissionHandler(wc, 'notifications', r));

// Quit: main closes the engine first, then quits again.
let prevented = false;
for (const fn of state.appHandlers.get('will-quit') ?? [])
  fn({ preventDefault: () => (prevented = true) });
await until(() => state.quitCalls > 0);
report.quit = { preventedFirst: prevented, quitCalls: state.quitCalls };

process.stdout.write(JSON.stringify(report));
