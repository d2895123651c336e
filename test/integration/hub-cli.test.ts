// `overnight models search|files|pull` as a user runs them (a real process) against the local
// Hugging Face stand-in, pointed there with OVERNIGHT_HUB_URL.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startHubServer, type HubServer } from '../fixtures/hub-server.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'overnight.mjs');
let dir: string;
let server: HubServer;
let model: Buffer;

/** Async, so the stand-in server in this process keeps answering. */
function overnight(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [bin, '--data-dir', join(dir, 'data'), ...args], {
      cwd: root,
      env: { ...process.env, OVERNIGHT_HUB_URL: server.url },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill(), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ status: code ?? -1, stdout, stderr });
    });
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-hubcli-'));
  model = readFileSync((await tinyModel({ type: 'q8_0', arch: 'llama' })).path);
  server = await startHubServer([
    {
      id: 'tiny/llama-GGUF',
      downloads: 42,
      files: [
        { path: 'tiny-llama-Q8_0.gguf', data: model, bytesPerSecond: 256 * 1024 },
        { path: 'bad-Q8_0.gguf', data: model, corrupt: true },
      ],
    },
  ]);
});
after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('overnight models search / files / pull', () => {
  it('searches, lists files with the train-here badge, pulls with a progress bar into the library', async () => {
    const s = await overnight('models', 'search', 'llama');
    assert.equal(s.status, 0, s.stderr);
    assert.match(s.stdout, /^REPOSITORY\s+DOWNLOADS/m);
    assert.match(s.stdout, /tiny\/llama-GGUF\s+42/);

    const f = await overnight('models', 'files', 'tiny/llama-GGUF');
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /tiny-llama-Q8_0\.gguf\s+Q8_0\s+\S+ \S+\s+trainable, fits/);

    const p = await overnight('models', 'pull', 'hf:tiny/llama-GGUF/tiny-llama-Q8_0.gguf');
    assert.equal(p.status, 0, p.stderr);
    assert.match(p.stderr, /\[#+-*\]\s+\d+% .* \/ .*\/s\s+ETA/); // the progress bar
    assert.match(p.stdout, /Downloaded hf:tiny\/llama-GGUF\/tiny-llama-Q8_0\.gguf/);
    const dest = join(dir, 'data', 'models', 'tiny', 'llama-GGUF', 'tiny-llama-Q8_0.gguf');
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(readFileSync(dest)), sha(model));

    const list = await overnight('--json', 'models', 'list');
    assert.deepEqual(
      (JSON.parse(list.stdout) as { path: string }[]).map((m) => m.path),
      [dest],
    );
  });

  it('a corrupt download exits 1 with one plain error line and leaves nothing', async () => {
    const p = await overnight('models', 'pull', 'hf:tiny/llama-GGUF/bad-Q8_0.gguf');
    assert.equal(p.status, 1);
    assert.match(
      p.stderr,
      /^error: the downloaded bad-Q8_0\.gguf is corrupt: .* nothing was added to the library$/m,
    );
    assert.ok(!existsSync(join(dir, 'data', 'models', 'tiny', 'llama-GGUF', 'bad-Q8_0.gguf')));
    const bad = await overnight('models', 'pull', 'tiny/llama-GGUF/x.gguf');
    assert.equal(bad.status, 1);
    assert.match(
      bad.stderr,
      /error: "tiny\/llama-GGUF\/x.gguf" is not a Hugging Face file: expected hf:owner\/name\/file.gguf/,
    );
  });
});
