import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RpcError } from './errors.ts';
import type { ConnectionStatus } from './status.ts';
import { rpcUrl, takeToken } from './token.ts';
import { backoffDelay, WebSocketRpcClient, type SocketLike } from './websocket.ts';

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: { id: number; method: string; params: unknown }[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {}
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  reply(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
}

function setup(serverUp = false) {
  const sockets: FakeSocket[] = [];
  const statuses: ConnectionStatus[] = [];
  const client = new WebSocketRpcClient({
    url: 'ws://127.0.0.1:1/rpc?token=t',
    createSocket: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    probeServerUp: async () => serverUp,
    backoff: { initialMs: 1, maxMs: 4, factor: 2 },
    onStatus: (s) => statuses.push(s),
  });
  const last = () => sockets[sockets.length - 1]!;
  return { client, sockets, statuses, last };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

const sysInfo = {
  platform: 'linux',
  arch: 'x64',
  cpuModel: 'cpu',
  cpuCores: 2,
  cpuPhysicalCores: 1,
  ramTotal: 100,
  ramFree: 50,
  inferenceBackends: ['cpu'],
  trainerBackends: ['cpu'],
  trainerBackend: {
    backend: 'cpu',
    reason: 'CPU: no GPU addon built (npm run build:native:vulkan)',
  },
  gpus: [],
  appVersion: '0.1.0',
  dataDir: '/d',
};

test('a call made while connecting is sent on open and resolves with the validated result', async () => {
  const { client, last } = setup();
  const p = client.call('system.info', {});
  assert.equal(last().sent.length, 0);
  last().open();
  assert.deepEqual(last().sent[0], { id: 1, method: 'system.info', params: {} });
  last().reply({ id: 1, result: sysInfo });
  assert.deepEqual(await p, sysInfo);
  client.close();
});

test('an error response becomes an RpcError with its code and message', async () => {
  const { client, last } = setup();
  last().open();
  const p = client.call('models.add', { path: '/x.txt' });
  last().reply({ id: 1, error: { code: 'INVALID_FILE', message: '/x.txt is not a GGUF file' } });
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RpcError);
    assert.equal(err.code, 'INVALID_FILE');
    assert.equal(err.message, '/x.txt is not a GGUF file');
    return true;
  });
  client.close();
});

test('a result that does not match the contract is a BAD_RESPONSE naming the field', async () => {
  const { client, last } = setup();
  last().open();
  const p = client.call('system.info', {});
  last().reply({ id: 1, result: { ...sysInfo, ramTotal: 'lots' } });
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RpcError);
    assert.equal(err.code, 'BAD_RESPONSE');
    assert.match(err.message, /ramTotal/);
    return true;
  });
  client.close();
});

test('a lost connection rejects calls in flight, fails fast while offline, then reconnects', async () => {
  const { client, sockets, statuses, last } = setup();
  last().open();
  const inFlight = client.call('models.list', {});
  last().drop();
  await assert.rejects(
    inFlight,
    (err: unknown) => err instanceof RpcError && err.code === 'DISCONNECTED',
  );
  assert.equal(client.status.state, 'offline');
  await assert.rejects(client.call('models.list', {}), /not connected/);

  await tick(10); // backoff of 1 ms
  assert.equal(sockets.length, 2);
  last().open();
  assert.equal(client.status.state, 'open');
  assert.deepEqual(
    statuses.map((s) => s.state),
    ['connecting', 'open', 'offline', 'connecting', 'open'],
  );
  const p = client.call('models.list', {});
  last().reply({ id: last().sent[0]!.id, result: [] });
  assert.deepEqual(await p, []);
  client.close();
});

test('a socket refused before opening while the server answers HTTP means a bad token', async () => {
  const { client, last } = setup(true);
  const p = client.call('models.list', {});
  last().drop();
  await assert.rejects(p, (err: unknown) => err instanceof RpcError && err.code === 'DISCONNECTED');
  await tick();
  assert.deepEqual(client.status, { state: 'unauthorized', reason: 'rejected' });
  await assert.rejects(client.call('models.list', {}), (err: unknown) => {
    return err instanceof RpcError && err.code === 'UNAUTHORIZED';
  });
  client.close();
});

test('close code 4401 means unauthorized, with no retries', async () => {
  const { client, sockets, last } = setup();
  last().open();
  last().drop(4401);
  await tick(10);
  assert.equal(client.status.state, 'unauthorized');
  assert.equal(sockets.length, 1);
  client.close();
});

test('events are validated and delivered; malformed ones are dropped', async () => {
  const { client, last } = setup();
  last().open();
  const got: unknown[] = [];
  const off = client.on('models.changed', (p) => got.push(p));
  const warn = console.warn;
  console.warn = () => {};
  try {
    last().reply({ event: 'models.changed', data: { ids: ['a'] } });
    last().reply({ event: 'models.changed', data: { ids: 'a' } });
    last().reply({ event: 'no.such', data: {} });
  } finally {
    console.warn = warn;
  }
  off();
  last().reply({ event: 'models.changed', data: { ids: ['b'] } });
  assert.deepEqual(got, [{ ids: ['a'] }]);
  client.close();
});

test('backoff doubles from the initial delay up to the cap', () => {
  const b = { initialMs: 500, maxMs: 10_000, factor: 2 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, b)),
    [500, 1000, 2000, 4000, 8000, 10_000, 10_000],
  );
});

test('the token moves from the URL fragment into sessionStorage and out of the address bar', () => {
  const store = new Map<string, string>();
  let replaced = '';
  const env = {
    location: { hash: '#token=abc123', pathname: '/', search: '' },
    storage: {
      getItem: (k: string) => store.get(k) ?? null,
      setItem: (k: string, v: string) => void store.set(k, v),
    },
    history: {
      replaceState: (_d: unknown, _t: string, url?: string | URL | null) =>
        void (replaced = String(url)),
    },
  };
  assert.equal(takeToken(env), 'abc123');
  assert.equal(replaced, '/#/');
  // A reload: no fragment, the token comes from sessionStorage.
  assert.equal(
    takeToken({ ...env, location: { hash: '#/system', pathname: '/', search: '' } }),
    'abc123',
  );
  assert.equal(
    rpcUrl({ protocol: 'http:', host: '127.0.0.1:7878' }, 'a b'),
    'ws://127.0.0.1:7878/rpc?token=a%20b',
  );
});
