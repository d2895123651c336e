// The `overnight` command as a user runs it: a real process through bin/overnight.mjs.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { modelInfoSchema } from '../../contract/index.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'overnight.mjs');
let dir: string;
let dataDir: string;

function overnight(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, OVERNIGHT_DATA_DIR: join(dir, 'env-data-dir') },
    timeout: 60_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  dataDir = join(dir, 'data');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('overnight CLI', () => {
  it('models add --json prints the metadata as JSON', async () => {
    const tm = await tinyModel({ type: 'q4_k_m' });
    const file = join(dir, 'tiny.gguf');
    copyFileSync(tm.path, file);
    const r = overnight('models', 'add', file, '--json', '--data-dir', dataDir);
    assert.equal(r.status, 0, r.stderr);
    const m = modelInfoSchema.parse(JSON.parse(r.stdout));
    assert.equal(m.path, file);
    assert.equal(m.architecture, 'llama');
    assert.equal(m.fileType, 'Q4_K_M');
    assert.equal(m.layers, tm.nLayer);
    assert.equal(m.vocabSize, tm.nVocab);
    assert.equal(m.fileSize, tm.fileSize);
    assert.equal(m.trainable.ok, true);

    const list = overnight('--json', 'models', 'list', '--data-dir', dataDir);
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id),
      [m.id],
    );

    const human = overnight('models', 'list', '--data-dir', dataDir);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /^ID\s+NAME\s+ARCH\s+PARAMS\s+TYPE\s+SIZE/m);
    assert.match(
      human.stdout,
      new RegExp(`${m.id}\\s+tiny\\s+llama\\s+\\d+(\\.\\d)?M\\s+Q4_K_M\\s+\\d+\\.\\d MB`),
    );

    const show = overnight('models', 'show', m.id, '--data-dir', dataDir);
    assert.match(show.stdout, /^architecture\s+llama$/m);

    const rm = overnight('models', 'remove', m.id, '--data-dir', dataDir);
    assert.equal(rm.status, 0, rm.stderr);
    const again = overnight('models', 'remove', m.id, '--data-dir', dataDir);
    assert.equal(again.status, 1);
    assert.equal(again.stderr, `error: no model with id "${m.id}"\n`);
  });

  it('a bad file exits 1 with one clear line on stderr', () => {
    const file = join(dir, 'notes.gguf');
    writeFileSync(file, 'plain text, not a model');
    const r = overnight('models', 'add', file, '--data-dir', dataDir);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^error: .*notes\.gguf is not a GGUF file \(magic bytes [0-9a-f]{8} \("plai"\), expected "GGUF"\)\n$/,
    );

    const missing = overnight(
      'models',
      'add',
      join(dir, 'missing.gguf'),
      '--json',
      '--data-dir',
      dataDir,
    );
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^error: .*missing\.gguf does not exist\n$/);
  });

  it('usage mistakes exit 2', () => {
    const r = overnight('models', 'show', '--data-dir', dataDir);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^error: missing <id>\nusage: overnight models show <id>\n$/);
    assert.equal(overnight('frobnicate').status, 2);
    assert.equal(overnight('models', 'list', '--bogus', '--data-dir', dataDir).status, 2);
    assert.equal(overnight('serve', '--port', 'abc', '--data-dir', dataDir).status, 2);
  });

  it('system --json describes this machine', () => {
    const r = overnight('system', '--json', '--data-dir', dataDir);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      trainerBackends: string[];
      inferenceBackends: string[];
      dataDir: string;
    };
    assert.ok(s.trainerBackends.includes('cpu'));
    assert.ok(s.inferenceBackends.includes('cpu'));
    assert.equal(s.dataDir, dataDir);
  });

  it('serve --port 0 prints the URL, serves, and stops on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [bin, 'serve', '--port', '0', '--json', '--data-dir', dataDir],
      { cwd: root },
    );
    try {
      const line = await new Promise<string>((resolveLine, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolveLine(out.split('\n')[0]!);
        });
        child.once('exit', (code) => reject(new Error(`serve exited early with ${code}`)));
      });
      const info = JSON.parse(line) as { url: string; port: number; token: string };
      assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+\/#token=/);
      const res = await fetch(`http://127.0.0.1:${info.port}/`);
      assert.ok(res.status === 200 || res.status === 503);
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
