// Web mode end to end over real sockets: token + Origin checks on the WebSocket upgrade,
// typed errors and events through the wire, and the static file server.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { OvernightError } from '../../contract/index.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { connectWsClient } from '../../core/rpc/ws-client.ts';
import { startServer, type RunningServer } from '../../core/server/index.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

let dir: string;
let engine: Engine;
let server: RunningServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  const renderer = join(dir, 'renderer');
  mkdirSync(join(renderer, 'assets'), { recursive: true });
  writeFileSync(
    join(renderer, 'index.html'),
    '<!doctype html><title>Overnight</title><script src="/assets/app.js"></script>',
  );
  writeFileSync(join(renderer, 'assets', 'app.js'), 'console.log("hi")');
  writeFileSync(join(dir, 'secret.txt'), 'do not serve');
  engine = createEngine({ dataDir: join(dir, 'data') });
  server = await startServer({ engine, host: '127.0.0.1', port: 0, rendererDir: renderer });
});
after(async () => {
  await server.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Opens a raw WebSocket and reports the HTTP status of a refused upgrade (or 101). */
function upgradeStatus(query: string, origin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/rpc${query}`, origin ? { origin } : {});
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.close();
    });
    ws.on('error', reject);
  });
}

function get(path: string): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('web server', () => {
  const origin = (): string => `http://127.0.0.1:${server.port}`;

  it('prints a page URL that carries the token in the fragment', () => {
    assert.match(
      server.url,
      new RegExp(`^http://127\\.0\\.0\\.1:${server.port}/#token=[A-Za-z0-9_-]{32}$`),
    );
    assert.equal(server.url.split('#token=')[1], server.token);
  });

  it('accepts the right token and Origin', async () => {
    assert.equal(await upgradeStatus(`?token=${server.token}`, origin()), 101);
    assert.equal(
      await upgradeStatus(`?token=${server.token}`, `http://localhost:${server.port}`),
      101,
    );
  });

  it('rejects a missing token with 401', async () => {
    assert.equal(await upgradeStatus('', origin()), 401);
  });

  it('rejects a wrong token with 401', async () => {
    assert.equal(await upgradeStatus(`?token=${server.token.slice(1)}x`, origin()), 401);
    assert.equal(await upgradeStatus('?token=short', origin()), 401);
  });

  it('rejects a wrong or missing Origin with 403', async () => {
    assert.equal(await upgradeStatus(`?token=${server.token}`, 'http://evil.example'), 403);
    assert.equal(
      await upgradeStatus(`?token=${server.token}`, `http://127.0.0.1:${server.port + 1}`),
      403,
    );
    assert.equal(
      await upgradeStatus(`?token=${server.token}`, `https://127.0.0.1:${server.port}`),
      403,
    );
    assert.equal(await upgradeStatus(`?token=${server.token}`), 403);
  });

  it('the Node client reports a refused connection as UNAUTHORIZED', async () => {
    await assert.rejects(
      connectWsClient({ url: server.wsUrl, token: 'wrong' }),
      (e: unknown) => e instanceof OvernightError && e.code === 'UNAUTHORIZED',
    );
  });

  it('answers an invalid payload with a typed INVALID_INPUT naming the field', async () => {
    const client = await connectWsClient(server.url);
    try {
      await assert.rejects(
        client.call('models.add', { path: 42 as never }),
        (e: unknown) =>
          e instanceof OvernightError &&
          e.code === 'INVALID_INPUT' &&
          /path: expected string/.test(e.message),
      );
      await assert.rejects(
        client.call('models.nope' as never, {} as never),
        (e: unknown) => e instanceof OvernightError && e.code === 'UNKNOWN_METHOD',
      );
    } finally {
      await client.close();
    }
  });

  it('answers malformed messages without dropping the connection', async () => {
    const ws = new WebSocket(`${server.wsUrl}?token=${server.token}`, { origin: origin() });
    await new Promise((r) => ws.once('open', r));
    const replies: unknown[] = [];
    ws.on('message', (d) => replies.push(JSON.parse(d.toString())));
    ws.send('not json');
    ws.send(JSON.stringify({ id: 7, method: 'models.list', params: {} }));
    await new Promise((r) => setTimeout(r, 300));
    ws.close();
    assert.deepEqual(replies[0], {
      id: 0,
      error: { code: 'INVALID_INPUT', message: 'message is not valid JSON' },
    });
    assert.deepEqual(replies[1], { id: 7, result: [] });
  });

  it('a valid call works and events reach every subscribed client', async () => {
    const tm = await tinyModel({ type: 'q4_0' });
    const path = join(dir, 'tiny.gguf');
    copyFileSync(tm.path, path);
    const a = await connectWsClient(server.url);
    const b = await connectWsClient(server.url);
    try {
      const seenA: unknown[] = [];
      const seenB = new Promise<unknown>((resolve) => b.on('models.changed', resolve));
      a.on('models.changed', (p) => seenA.push(p));
      const added = await a.call('models.add', { path });
      assert.equal(added.architecture, 'llama');
      assert.equal(added.fileType, 'Q4_0');
      const list = await b.call('models.list', {});
      assert.deepEqual(
        list.map((m) => m.id),
        [added.id],
      );
      assert.deepEqual(await seenB, { ids: [added.id] });
      assert.deepEqual(seenA, [{ ids: [added.id] }]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('serves the renderer with content types and a CSP on HTML', async () => {
    const index = await get('/');
    assert.equal(index.status, 200);
    assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
    const csp = String(index.headers['content-security-policy']);
    assert.match(csp, /default-src 'self'/);
    assert.ok(csp.includes(`connect-src 'self' ws://127.0.0.1:${server.port}`), csp);
    const js = await get('/assets/app.js');
    assert.equal(js.status, 200);
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(
      (await get('/some/route')).status,
      200,
      'client-side routes fall back to index.html',
    );
    assert.equal((await get('/missing.js')).status, 404);
  });

  it('does not serve files outside the renderer folder', async () => {
    for (const p of [
      '/../secret.txt',
      '/..%2fsecret.txt',
      '/%2e%2e/secret.txt',
      '/assets/..%2f..%2fsecret.txt',
    ]) {
      const r = await get(p);
      assert.notEqual(r.body, 'do not serve', p);
      assert.ok(
        r.status === 404 ||
          r.status === 400 ||
          (r.status === 200 && r.body.includes('<title>Overnight</title>')),
        `${p}: ${r.status}`,
      );
    }
  });

  it('says how to build the renderer when it is missing', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'overnight-'));
    const s = await startServer({ engine, port: 0, rendererDir: empty });
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/`);
      assert.equal(res.status, 503);
      assert.match(await res.text(), /npm run build:renderer/);
    } finally {
      await s.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
