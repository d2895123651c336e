/**
 * A run on a long text file trains full windows (issue #11): the .txt reader cuts the file into
 * records of at most 4000 characters, and each record used to end in a short window of its own
 * (windows of 268-292 tokens among 512-token ones). The datasets domain's packer
 * (core/datasets/pack.ts) streams the records into windows of exactly the sequence length, the
 * stats report the fill ratio, and the trainer's steps each train a full window.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createEngine, type Engine } from '../../core/engine.ts';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { runToEnd } from './engine-fixture.ts';

const SEQ = 64;
let dir: string;
let engine: Engine;
let modelId: string;
let datasetId: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  engine = createEngine({ dataDir: join(dir, 'data') });
  modelId = (await engine.models.add((await tinyModel({ type: 'q8_0' })).path)).id;
  // ~14 KB of prose in paragraphs: four or more records of up to 4000 characters.
  const para = (i: number) =>
    `Paragraph ${i} tells how the night shift trained a small model while the house slept; ` +
    'the fans hummed, the loss fell, and by morning the adapter answered in the house style. '.repeat(
      3,
    );
  const file = join(dir, 'notes.txt');
  writeFileSync(file, Array.from({ length: 40 }, (_, i) => para(i)).join('\n\n') + '\n');
  const r = await engine.datasets.import({ path: file });
  assert.ok(r.status === 'imported');
  assert.ok(r.dataset.records >= 4, `the file makes several records (${r.dataset.records})`);
  datasetId = r.dataset.id;
});
after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the stats of a long text file report full windows', async () => {
  const s = await engine.datasets.stats(datasetId, modelId, SEQ, 'assistant');
  // Only the last window of the stream may be short.
  assert.ok(s.fillRatio > 1 - 1 / s.windows, `fill ${s.fillRatio} over ${s.windows} windows`);
  assert.equal(s.dropped, 0);
});

test('a run on a long text file trains a full window at every step but the last window', async () => {
  const run = await runToEnd(engine, {
    model: modelId,
    dataset: datasetId,
    preset: 'custom',
    sequenceLength: SEQ,
    effectiveBatch: 1,
    epochs: 1,
    validationShare: 0,
    earlyStopping: false,
    finalAdapter: 'last',
    loraRank: 4,
    loraTargets: ['attn_q'],
    evalInterval: 1000,
    checkpointInterval: 1000,
  });
  assert.equal(run.state, 'completed', run.stateReason ?? '');
  assert.ok((run.estimate?.fillRatio ?? 0) > 0.9, `estimate fill ${run.estimate?.fillRatio}`);

  // The trainer's input: every window but the last holds SEQ tokens (no padding segment).
  const data = new TokenDataReader(join(run.folder, 'train.tokens'));
  try {
    assert.ok(data.nWindows >= 20, `${data.nWindows} windows`);
    for (let w = 0; w < data.nWindows - 1; w++) {
      const used = data.read(w).segments!.filter((s) => s >= 0).length;
      assert.equal(used, SEQ, `window ${w} of ${data.nWindows} holds ${used} tokens`);
    }
  } finally {
    data.close();
  }

  // What the trainer reported: one window per step; the trained tokens of each step (the
  // difference of the cumulative count) are the window's SEQ positions less the record ends in
  // it (an end token has no next token). Only the stream's last window may be short.
  const metrics = await engine.dispatcher.call('runs.metrics', { id: run.id });
  assert.equal(metrics.length, run.totalSteps);
  const perStep = metrics.map((m, i) => m.tokens - (i > 0 ? metrics[i - 1]!.tokens : 0));
  const short = perStep.filter((n) => n < SEQ - 2);
  assert.ok(short.length <= 1, `steps that trained less than a full window: ${short.join(', ')}`);
});
