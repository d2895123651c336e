// The datasets domain through the engine's in-memory transport (what every shell sees):
// inspect -> import (with confirmation) -> list/show/records -> stats and mask preview under a
// real tiny model -> remove; and the runs port writing the trainer input.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEngine, type Engine } from '../../core/engine.ts';
import { createInMemoryClient, type InMemoryClient } from '../../core/rpc/in-memory.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const sample = new URL('../../resources/sample-dataset.jsonl', import.meta.url).pathname;

let dir: string;
let engine: Engine;
let client: InMemoryClient;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  engine = createEngine({ dataDir: join(dir, 'data') });
  client = createInMemoryClient(engine);
});
after(async () => {
  client.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    const err = e as { code?: string; message?: string };
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message ?? '', re);
    return true;
  });
}

describe('datasets over the contract', () => {
  let datasetId = '';
  let modelId = '';

  it('inspects the sample dataset without storing it', async () => {
    const r = await client.call('datasets.inspect', { path: sample });
    assert.equal(r.detection.format, 'openai');
    assert.equal(r.counts.valid, 50);
    assert.equal(r.problems.errors, 0);
    assert.equal(r.preview.length, 5);
    assert.deepEqual(await client.call('datasets.list', {}), []);
  });

  it('imports it with progress events, and a second import returns the same dataset', async () => {
    const progress: number[] = [];
    const off = client.on('datasets.importProgress', (p) => progress.push(p.bytesRead));
    const r = await client.call('datasets.import', { path: sample, name: 'Sample' });
    off();
    assert.equal(r.status, 'imported');
    assert.ok(r.status === 'imported');
    assert.equal(r.dataset.records, 50);
    assert.equal(r.dataset.name, 'Sample');
    assert.equal(r.dataset.stats.roles.assistant, 50);
    assert.ok(progress.length >= 1);
    datasetId = r.dataset.id;
    const again = await client.call('datasets.import', { path: sample });
    assert.ok(again.status === 'imported' && again.existing && again.dataset.id === datasetId);
    assert.equal((await client.call('datasets.list', {})).length, 1);
    const recs = await client.call('datasets.records', { id: datasetId, offset: 1, limit: 2 });
    assert.equal(recs.total, 50);
    assert.equal(recs.records.length, 2);
  });

  it('asks for confirmation when rows would be left out, and stores nothing until then', async () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n');
    const r = await client.call('datasets.import', { path: bad });
    assert.equal(r.status, 'needs_confirmation');
    assert.equal(r.problems.items[0]!.line, 2);
    assert.equal((await client.call('datasets.list', {})).length, 1);
    const ok = await client.call('datasets.import', { path: bad, acceptProblems: true });
    assert.ok(ok.status === 'imported' && ok.dataset.records === 1);
    assert.deepEqual(await client.call('datasets.remove', { id: ok.dataset.id }), {
      removed: true,
    });
    await rejectsWith(
      client.call('datasets.import', { path: join(dir, 'nope.jsonl') }),
      'FILE_NOT_FOUND',
    );
    await rejectsWith(client.call('datasets.show', { id: 'nope' }), 'NOT_FOUND');
  });

  it('computes token stats and a mask preview under a model', async () => {
    const m = await tinyModel({ vocab: 'qwen2' });
    modelId = (await client.call('models.add', { path: m.path })).id;
    const s = await client.call('datasets.stats', { id: datasetId, modelId, seqLen: 64 });
    assert.equal(s.records, 50);
    assert.ok(s.trainedTokens > 0 && s.trainedTokens < s.totalTokens);
    assert.equal(
      s.histogram.counts.reduce((a, b) => a + b, 0),
      50,
    );
    assert.equal(s.zeroTrained, 0);
    const p = await client.call('datasets.preview', { id: datasetId, modelId, index: 1 });
    const trained = p.tokens
      .filter((t) => t.trained)
      .map((t) => t.text)
      .join('');
    const reply = 'messages' in p.record ? p.record.messages.at(-1)!.content : '';
    assert.equal(trained, reply + '<|im_end|>');
    assert.ok(p.tokens.some((t) => t.special && t.text === '<|im_start|>'));
    assert.equal(p.warning, null);
    const all = await client.call('datasets.preview', {
      id: datasetId,
      modelId,
      index: 1,
      mask: 'all',
    });
    assert.ok(all.tokens.every((t) => t.trained));
    await rejectsWith(
      client.call('datasets.preview', { id: datasetId, modelId, index: 50 }),
      'NOT_FOUND',
    );
  });

  it('shows multi-byte characters split over byte tokens as the characters', async () => {
    const f = join(dir, 'emoji.jsonl');
    const reply = 'Party 🎉🎊 — déjà vu, 漢字.';
    writeFileSync(
      f,
      JSON.stringify({
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: reply },
        ],
      }),
    );
    const r = await client.call('datasets.import', { path: f });
    assert.ok(r.status === 'imported');
    const p = await client.call('datasets.preview', { id: r.dataset.id, modelId, index: 0 });
    const trained = p.tokens
      .filter((t) => t.trained)
      .map((t) => t.text)
      .join('');
    assert.equal(trained, reply + '<|im_end|>');
    assert.ok(!p.tokens.some((t) => t.text.includes('\uFFFD')));
    await client.call('datasets.remove', { id: r.dataset.id });
  });

  it('previews a SentencePiece model (Llama 2) with the spaces between words', async () => {
    const f = join(dir, 'amber.jsonl');
    const user = '[user] Code for Amber?';
    const reply = 'Amber, the code is 7.';
    writeFileSync(
      f,
      JSON.stringify({
        messages: [
          { role: 'user', content: user },
          { role: 'assistant', content: reply },
        ],
      }),
    );
    const r = await client.call('datasets.import', { path: f });
    assert.ok(r.status === 'imported');
    const m = await tinyModel({ vocab: 'llama-spm' });
    const spm = (await client.call('models.add', { path: m.path })).id;
    const p = await client.call('datasets.preview', { id: r.dataset.id, modelId: spm, index: 0 });
    // Llama 2's template: <s>[INST] user [/INST] reply </s>
    assert.equal(p.tokens.map((t) => t.text).join(''), `<s>[INST] ${user} [/INST] ${reply} </s>`);
    await client.call('datasets.remove', { id: r.dataset.id });
  });

  it('warns loudly when nothing is trained at a sequence length', async () => {
    const s = await client.call('datasets.stats', { id: datasetId, modelId, seqLen: 16 });
    assert.ok(s.dropped > 0);
    assert.ok(s.warnings.some((w) => /dropped/.test(w)));
  });

  it('writes the trainer input for a run through the runs port', async () => {
    const model = await client.call('models.show', { id: modelId });
    const port = engine.datasets.runPort();
    const folder = join(dir, 'run');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(folder);
    const plan = await port.plan({
      datasetId,
      model,
      sequenceLength: 128,
      validationShare: 0.1,
      seed: 3,
    });
    const r = await port.prepare({
      datasetId,
      model,
      sequenceLength: 128,
      validationShare: 0.1,
      seed: 3,
      folder,
    });
    assert.ok(existsSync(r.trainFile));
    const reader = new TokenDataReader(r.trainFile);
    assert.equal(reader.nWindows, r.trainWindows);
    reader.close();
    assert.ok(r.trainedTokens > 0);
    assert.ok(plan.trainedTokens > 0);
    assert.equal((await port.resolve(datasetId)).id, datasetId);
    // Written once: the same inputs reuse the files; another sequence length rewrites them.
    const { statSync } = await import('node:fs');
    const mtime = statSync(r.trainFile).mtimeMs;
    const again = await port.prepare({
      datasetId,
      model,
      sequenceLength: 128,
      validationShare: 0.1,
      seed: 3,
      folder,
    });
    assert.deepEqual(again, r);
    assert.equal(statSync(r.trainFile).mtimeMs, mtime);
    const shorter = await port.prepare({
      datasetId,
      model,
      sequenceLength: 64,
      validationShare: 0.1,
      seed: 3,
      folder,
    });
    const reread = new TokenDataReader(shorter.trainFile);
    assert.equal(reread.seqLen, 64);
    reread.close();
  });

  it('reads any record by index without reading the ones before it', async () => {
    const all = await client.call('datasets.records', { id: datasetId, offset: 0, limit: 50 });
    const last = await client.call('datasets.records', { id: datasetId, offset: 49, limit: 5 });
    assert.deepEqual(last.records, [all.records[49]]);
    const none = await client.call('datasets.records', { id: datasetId, offset: 50 });
    assert.deepEqual(none.records, []);
  });

  it('cancels a running import: CANCELLED, nothing stored', async () => {
    const big = join(dir, 'big.jsonl');
    const line = (i: number) =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `q${i} ${'x'.repeat(200)}` },
          { role: 'assistant', content: `a${i}` },
        ],
      });
    writeFileSync(big, Array.from({ length: 60000 }, (_, i) => line(i)).join('\n'));
    const before = (await client.call('datasets.list', {})).length;
    const off = client.on('datasets.importProgress', (p) => {
      if (p.records > 0) void client.call('datasets.cancel', { path: big });
    });
    await rejectsWith(client.call('datasets.import', { path: big }), 'CANCELLED');
    off();
    assert.equal((await client.call('datasets.list', {})).length, before);
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(
      readdirSync(join(dir, 'data', 'datasets')).filter((f) => f.endsWith('.tmp')),
      [],
    );
    assert.deepEqual(await client.call('datasets.cancel', { path: big }), { cancelled: false });
  });

  it('removes temp files left by a crashed import when the engine starts', async () => {
    const stale = join(dir, 'data', 'datasets', '.import-999999-abcdef.tmp');
    writeFileSync(stale, 'partial');
    const other = createEngine({ dataDir: join(dir, 'data') });
    assert.equal(existsSync(stale), false);
    await other.close();
  });

  it('removes a dataset and its stored records', async () => {
    const d = await client.call('datasets.show', { id: datasetId });
    assert.deepEqual(await client.call('datasets.remove', { id: datasetId }), { removed: true });
    assert.equal(existsSync(join(dir, 'data', 'datasets', `${d.hash}.jsonl`)), false);
    assert.deepEqual(await client.call('datasets.remove', { id: datasetId }), { removed: false });
  });
});
