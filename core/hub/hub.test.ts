/**
 * The hub against a local stand-in for Hugging Face (test/fixtures/hub-server.ts) serving real
 * generated GGUF models: search, files with verdicts, download into the library, resume after a
 * dropped connection (in process and in a new engine), sha256 refusal, gated access, names that
 * try to leave the models folder, offline, not found, disk space, cancel.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { HubDownload, RpcClient } from '../../contract/index.ts';
import { createEngine, type Engine } from '../engine.ts';
import { createInMemoryClient } from '../rpc/in-memory.ts';
import { estimateBytes } from '../runs/estimate.ts';
import { readModelDims } from '../runs/model-dims.ts';
import { tinyModel } from '../../test/fixtures/tiny-model.ts';
import { startHubServer, type HostedRepo, type HubServer } from '../../test/fixtures/hub-server.ts';
import { destinationFor, parseHubUri } from './names.ts';
import { defaultFitConfig } from './verdict.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, `code of: ${err.message}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('hub (local Hugging Face stand-in, real files)', () => {
  let server: HubServer;
  let llama: Buffer;
  let llamaPath: string;
  let qwen: Buffer;
  let moe: Buffer;
  const dirs: string[] = [];
  const engines: Engine[] = [];
  let repos: HostedRepo[];

  function newEngine(opts: { retries?: number; dataDir?: string; base?: string } = {}) {
    const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'overnight-hub-'));
    if (!opts.dataDir) dirs.push(dataDir);
    const engine = createEngine({
      dataDir,
      hubBaseUrl: opts.base ?? server.url,
      ...(opts.retries !== undefined ? { hubRetries: opts.retries } : {}),
    });
    engines.push(engine);
    return { engine, client: createInMemoryClient(engine) as RpcClient, dataDir };
  }

  async function finished(engine: Engine, d: HubDownload): Promise<HubDownload> {
    return engine.hub.downloads.wait(d.id);
  }

  before(async () => {
    const m1 = await tinyModel({ type: 'q8_0', arch: 'llama' });
    llamaPath = m1.path;
    llama = readFileSync(m1.path);
    qwen = readFileSync((await tinyModel({ type: 'q4_0', arch: 'qwen2', vocab: 'qwen2' })).path);
    moe = readFileSync((await tinyModel({ type: 'f16', arch: 'deepseek2' })).path);
    repos = [
      {
        id: 'tiny/llama-GGUF',
        downloads: 500,
        likes: 3,
        architecture: 'llama',
        files: [{ path: 'tiny-llama-Q8_0.gguf', data: llama }],
      },
      {
        id: 'tiny/qwen-GGUF',
        downloads: 900,
        likes: 1,
        files: [
          { path: 'tiny-qwen-Q4_0.gguf', data: qwen },
          { path: 'tiny-qwen-Q3_K_M.gguf', data: qwen },
          { path: 'README.md', data: Buffer.from('# tiny') },
        ],
      },
      {
        id: 'tiny/moe-GGUF',
        downloads: 10,
        likes: 50,
        files: [{ path: 'moe-F16.gguf', data: moe }],
      },
      {
        id: 'tiny/gated-GGUF',
        gated: 'manual',
        architecture: 'llama',
        files: [{ path: 'gated-Q8_0.gguf', data: llama }],
      },
      {
        id: 'faults/drop-GGUF',
        files: [
          { path: 'drop-once-Q8_0.gguf', data: llama, dropAfter: Math.floor(llama.length / 2) },
          {
            path: 'drop-twice-Q8_0.gguf',
            data: llama,
            dropAfter: Math.floor(llama.length / 3),
            dropTimes: 2,
          },
          { path: 'corrupt-Q8_0.gguf', data: llama, corrupt: true },
          { path: 'huge-Q8_0.gguf', advertisedSize: 1e15 },
          { path: 'slow-Q8_0.gguf', data: llama, bytesPerSecond: 64 * 1024 },
        ],
      },
    ];
    server = await startHubServer(repos);
  });

  after(async () => {
    for (const e of engines) await e.close();
    await server?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('search lists GGUF repositories, sorted by downloads or likes, filtered by the query', async () => {
    const { client } = newEngine();
    const all = await client.call('hub.search', { query: 'tiny' });
    assert.deepEqual(
      all.map((r) => r.id),
      ['tiny/qwen-GGUF', 'tiny/llama-GGUF', 'tiny/moe-GGUF', 'tiny/gated-GGUF'],
    );
    const byLikes = await client.call('hub.search', { query: 'tiny', sort: 'likes' });
    assert.equal(byLikes[0]!.id, 'tiny/moe-GGUF');
    const one = await client.call('hub.search', { query: 'LLAMA' });
    assert.deepEqual(
      one.map((r) => r.id),
      ['tiny/llama-GGUF'],
    );
    assert.equal(all.find((r) => r.id === 'tiny/gated-GGUF')!.gated, 'manual');
    const q = server.log.find((l) => l.url.startsWith('/api/models?'))!;
    assert.match(q.url, /filter=gguf/);
  });

  test('files: GGUF files only, sha256, quantization, architecture from the header, memory badge', async () => {
    const { client } = newEngine();
    const r = await client.call('hub.files', { repo: 'tiny/qwen-GGUF' });
    assert.deepEqual(
      r.files.map((f) => f.path),
      ['tiny-qwen-Q4_0.gguf', 'tiny-qwen-Q3_K_M.gguf'],
    );
    const q4 = r.files[0]!;
    assert.equal(q4.sha256, sha(qwen));
    assert.equal(q4.quantization, 'Q4_0');
    assert.equal(q4.uri, 'hf:tiny/qwen-GGUF/tiny-qwen-Q4_0.gguf');
    assert.equal(q4.verdict.architecture, 'qwen2');
    assert.equal(q4.verdict.source, 'header'); // read with Range requests, not guessed
    assert.equal(q4.verdict.supported, true);
    assert.ok(
      server.log.some((l) => l.range?.startsWith('bytes=0-')),
      'a Range read of the header',
    );
    // Q3_K is not a type the trainer reads: same architecture, not trainable.
    assert.equal(r.files[1]!.verdict.supported, false);
    assert.match(r.files[1]!.verdict.reason ?? '', /Q3_K is not supported by the trainer/);

    // The badge is the training page's estimate at the default config, for this file's dims.
    const llamaFiles = await client.call('hub.files', { repo: 'tiny/llama-GGUF' });
    const fit = llamaFiles.files[0]!.verdict.fit;
    const dims = await readModelDims(llamaPath);
    assert.equal(fit.totalBytes, estimateBytes(defaultFitConfig(), dims));
    assert.equal(fit.sequenceLength, 512);
    assert.equal(fit.verdict, 'fits'); // a few hundred KB model on any machine
    assert.ok(fit.deviceFreeBytes > 0);

    const moeFiles = await client.call('hub.files', { repo: 'tiny/moe-GGUF' });
    assert.equal(moeFiles.files[0]!.verdict.supported, false);
    assert.match(moeFiles.files[0]!.verdict.reason ?? '', /mixture-of-experts/);
  });

  test('a download lands in the models folder, is verified and appears in the library', async () => {
    const { engine, client, dataDir } = newEngine();
    const events: HubDownload[] = [];
    client.on('hub.download', (d) => events.push(d));
    const d = await client.call('hub.download', { uri: 'hf:tiny/llama-GGUF/tiny-llama-Q8_0.gguf' });
    assert.equal(d.totalBytes, llama.length);
    assert.equal(d.sha256, sha(llama));
    const done = await finished(engine, d);
    assert.equal(done.state, 'completed', done.error ?? '');
    const dest = join(dataDir, 'models', 'tiny', 'llama-GGUF', 'tiny-llama-Q8_0.gguf');
    assert.equal(done.destination, dest);
    assert.equal(sha(readFileSync(dest)), sha(llama));
    assert.ok(!existsSync(`${dest}.part`) && !existsSync(`${dest}.part.json`));
    const list = await client.call('models.list', {});
    assert.deepEqual(
      list.map((m) => m.path),
      [dest],
    );
    assert.equal(list[0]!.id, done.modelId);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(events.at(-1)!.state, 'completed');
    assert.equal(events.at(-1)!.receivedBytes, llama.length);

    // The library badge for the downloaded model: same estimate.
    const fits = await client.call('hub.modelFits', {});
    assert.equal(fits[0]!.id, done.modelId);
    assert.equal(
      fits[0]!.fit.totalBytes,
      estimateBytes(defaultFitConfig(), await readModelDims(dest)),
    );

    // The repository-relative token the CLI prints is accepted again: already there.
    const again = await client.call('hub.download', { uri: d.uri });
    assert.equal(again.state, 'completed');
    assert.equal(again.modelId, done.modelId);
  });

  test('a connection dropped halfway: the .part is kept, a new engine resumes it with Range and the hash matches', async () => {
    const first = newEngine({ retries: 0 });
    const uri = 'hf:faults/drop-GGUF/drop-once-Q8_0.gguf';
    const d1 = await first.client.call('hub.download', { uri });
    const failed = await finished(first.engine, d1);
    assert.equal(failed.state, 'failed');
    assert.match(
      failed.error ?? '',
      /interrupted after .* the partial file is kept: download it again to resume/,
    );
    const part = `${failed.destination}.part`;
    const half = Math.floor(llama.length / 2);
    assert.equal(statSync(part).size, half);
    assert.equal((await first.client.call('models.list', {})).length, 0);
    await first.engine.close();

    // "Restart the app": a new engine on the same data dir.
    const second = newEngine({ retries: 0, dataDir: first.dataDir });
    const before = server.log.length;
    const d2 = await second.client.call('hub.download', { uri });
    assert.equal(d2.resumedFrom, half);
    const done = await finished(second.engine, d2);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.ok(
      server.log
        .slice(before)
        .some((l) => l.url.startsWith('/cdn/') && l.range === `bytes=${half}-`),
      'the second download asked only for the missing bytes',
    );
    assert.equal(sha(readFileSync(done.destination)), sha(llama));
    assert.equal((await second.client.call('models.list', {})).length, 1);
  });

  test('dropped twice during one download: resumed in process, no restart from zero', async () => {
    const { engine, client } = newEngine();
    const d = await client.call('hub.download', {
      uri: 'hf:faults/drop-GGUF/drop-twice-Q8_0.gguf',
    });
    const done = await finished(engine, d);
    assert.equal(done.state, 'completed', done.error ?? '');
    const third = Math.floor(llama.length / 3);
    const ranges = server.log
      .filter((l) => l.url.includes('drop-twice') && l.url.startsWith('/cdn/'))
      .map((l) => l.range);
    assert.deepEqual(ranges, [null, `bytes=${third}-`, `bytes=${third}-`]);
    assert.equal(sha(readFileSync(done.destination)), sha(llama));
  });

  test('a corrupted file is refused: no file left, nothing in the library', async () => {
    const { engine, client } = newEngine();
    const d = await client.call('hub.download', { uri: 'hf:faults/drop-GGUF/corrupt-Q8_0.gguf' });
    const done = await finished(engine, d);
    assert.equal(done.state, 'failed');
    assert.match(
      done.error ?? '',
      /is corrupt: its sha256 is [0-9a-f]{64}, but Hugging Face publishes/,
    );
    assert.match(done.error ?? '', /the file was removed and nothing was added to the library/);
    assert.ok(!existsSync(done.destination));
    assert.ok(!existsSync(`${done.destination}.part`));
    assert.equal((await client.call('models.list', {})).length, 0);
  });

  test('gated: without a token a plain message; with the token (stored 0600) it downloads', async () => {
    const { engine, client, dataDir } = newEngine();
    const uri = 'hf:tiny/gated-GGUF/gated-Q8_0.gguf';
    await rejects(
      client.call('hub.download', { uri }),
      'ACCESS_DENIED',
      /tiny\/gated-GGUF is a gated model: accept its conditions on .* set a Hugging Face access token/,
    );
    // Its files are still listed; the architecture comes from the hub's metadata.
    const files = await client.call('hub.files', { repo: 'tiny/gated-GGUF' });
    assert.equal(files.gated, 'manual');
    assert.equal(files.files[0]!.verdict.source, 'metadata');
    assert.equal(files.files[0]!.verdict.architecture, 'llama');

    await client.call('hub.setToken', { token: 'hf_wrongtoken99' });
    await rejects(
      client.call('hub.download', { uri }),
      'ACCESS_DENIED',
      /has not been granted access/,
    );

    const st = await client.call('hub.setToken', { token: server.token });
    assert.deepEqual(st, { hasToken: true, storage: 'file' });
    const tokenFile = join(dataDir, 'hub-token');
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
    const d = await client.call('hub.download', { uri });
    assert.equal((await finished(engine, d)).state, 'completed');
    assert.ok(server.log.some((l) => l.auth === `Bearer ${server.token}`));
    // Our downloader never sends the token to the CDN it is redirected to (the header peek is
    // node-llama-cpp's fetch, which keeps it on a same-origin redirect only, as here).
    const cdnDownloads = server.log.filter(
      (l) => l.url.startsWith('/cdn/') && (l.range === null || /^bytes=\d+-$/.test(l.range)),
    );
    assert.ok(
      cdnDownloads.length > 0 && cdnDownloads.every((l) => l.auth === null),
      JSON.stringify(cdnDownloads),
    );

    await rejects(
      client.call('hub.setToken', { token: 'not a token' }),
      'INVALID_INPUT',
      /not a Hugging Face access token/,
    );
    assert.deepEqual(await client.call('hub.setToken', { token: null }), {
      hasToken: false,
      storage: 'file',
    });
    assert.ok(!existsSync(tokenFile));
  });

  test('names that would leave the models folder are refused before any request', async () => {
    const { client } = newEngine();
    const before = server.log.length;
    for (const uri of [
      'hf:tiny/llama-GGUF/../../../../etc/evil.gguf',
      // Stays inside the folder, but "../" would make fetch ask the hub for another file.
      'hf:tiny/llama-GGUF/sub/../tiny-llama-Q8_0.gguf',
      'hf:../../x/y.gguf',
      'hf:tiny/..%2F..%2Fx/evil.gguf',
      'hf:tiny/llama-GGUF//abs.gguf',
      'hf:tiny/llama-GGUF/sub\\..\\evil.gguf',
      'hf:tiny/llama-GGUF/readme.md',
    ]) {
      await rejects(client.call('hub.download', { uri }), 'INVALID_INPUT', /not|outside/);
    }
    await rejects(
      client.call('hub.files', { repo: '../etc' }),
      'INVALID_INPUT',
      /not a Hugging Face repository id/,
    );
    await rejects(client.call('hub.files', { repo: 'a/b/c' }), 'INVALID_INPUT', /owner\/name/);
    assert.equal(server.log.length, before, 'no request was made');
    assert.throws(
      () => destinationFor('/data/models', { repo: 'a/..', file: 'x.gguf' }),
      /not a Hugging Face repository id/,
    );
    assert.deepEqual(parseHubUri('hf:a/b/dir/x-Q8_0.gguf'), {
      repo: 'a/b',
      file: 'dir/x-Q8_0.gguf',
    });
  });

  test('not found, offline and not enough disk space, in plain words; nothing left behind', async () => {
    const { client, dataDir } = newEngine();
    await rejects(
      client.call('hub.files', { repo: 'nobody/nothing' }),
      'NOT_FOUND',
      /there is no repository nobody\/nothing/,
    );
    await rejects(
      client.call('hub.download', { uri: 'hf:tiny/llama-GGUF/missing-Q8_0.gguf' }),
      'NOT_FOUND',
      /tiny\/llama-GGUF\/missing-Q8_0.gguf was not found/,
    );
    await rejects(
      client.call('hub.download', { uri: 'hf:faults/drop-GGUF/huge-Q8_0.gguf' }),
      'NO_SPACE',
      /not enough disk space for huge-Q8_0.gguf: it needs 1000.0 TB more/,
    );
    assert.ok(!existsSync(join(dataDir, 'models', 'faults', 'drop-GGUF', 'huge-Q8_0.gguf.part')));

    const closed = await startHubServer([]);
    await closed.close(); // nothing listens there any more
    const offline = newEngine({ base: closed.url });
    await rejects(
      offline.client.call('hub.search', { query: 'x' }),
      'NETWORK',
      /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): this machine seems to be offline/,
    );
    await rejects(
      offline.client.call('hub.download', { uri: 'hf:tiny/llama-GGUF/tiny-llama-Q8_0.gguf' }),
      'NETWORK',
      /cannot reach/,
    );
  });

  test('cancel stops the transfer and removes the partial file', async () => {
    const { engine, client } = newEngine();
    const d = await client.call('hub.download', { uri: 'hf:faults/drop-GGUF/slow-Q8_0.gguf' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await client.call('hub.downloads', {}))[0]!.state, 'downloading');
    await client.call('hub.cancel', { id: d.id });
    const done = await finished(engine, d);
    assert.equal(done.state, 'cancelled');
    assert.ok(done.receivedBytes < llama.length);
    assert.ok(!existsSync(`${done.destination}.part`));
    assert.ok(!existsSync(done.destination));
    assert.equal((await client.call('models.list', {})).length, 0);
  });

  test('recommended models: trainable architectures, hf: URIs, a reason each', async () => {
    const { client } = newEngine();
    const list = await client.call('hub.recommended', {});
    assert.ok(list.length >= 5);
    for (const m of list) {
      assert.ok(['llama', 'qwen2', 'qwen3'].includes(m.architecture), m.repo);
      assert.deepEqual(parseHubUri(m.uri), { repo: m.repo, file: m.file });
      assert.ok(m.why.length > 20);
    }
  });
});
