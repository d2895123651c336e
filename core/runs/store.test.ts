import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { runConfigSchema, type RunMetric } from '../../contract/index.ts';
import { migrations } from '../store/migrations/index.ts';
import { migration as runsMigration } from '../store/migrations/002-runs.ts';
import { migration as gradNormMigration } from '../store/migrations/004-metrics-grad-norm.ts';
import { RunStore } from './store.ts';

function fresh(): RunStore {
  const db = new Database(':memory:');
  db.pragma('foreign_keys = ON');
  for (const m of migrations) m.up(db);
  return new RunStore(db);
}
const config = runConfigSchema.parse({ model: 'm', dataset: 'd' });
const newRun = (id: string) => ({
  id,
  name: `run ${id}`,
  config,
  modelId: 'm',
  datasetId: 'd',
  folder: `/runs/${id}`,
  totalSteps: 10,
  estimate: null,
});
const metric = (step: number, loss = 1): RunMetric => ({
  step,
  epoch: step / 10,
  loss,
  lr: 1e-4,
  tokensPerSecond: 100,
  tokens: step * 64,
  memoryBytes: null,
  gradNorm: step / 4,
  time: step,
});

test('runs queue first in, first out; a resumed run goes to the back', () => {
  const s = fresh();
  s.insert(newRun('a'));
  s.insert(newRun('b'));
  assert.equal(s.nextQueued()?.id, 'a');
  s.enqueue('a', 'resumed');
  assert.equal(s.nextQueued()?.id, 'b');
  const a = s.require('a');
  assert.equal(a.state, 'queued');
  assert.equal(a.stateReason, 'resumed');
  assert.deepEqual(a.config, config);
});

test('a repeated step replaces its row, and truncation forgets a cut-short trajectory', () => {
  const s = fresh();
  s.insert(newRun('a'));
  s.writeBatch('a', {
    metrics: [1, 2, 3, 4].map((k) => metric(k)),
    evals: [{ step: 4, valLoss: 2, time: 4 }],
    probes: [],
  });
  s.truncateAfter('a', 2);
  assert.deepEqual(
    s.metrics('a').map((m) => m.step),
    [1, 2],
  );
  assert.deepEqual(s.evals('a'), []);
  s.writeBatch('a', {
    metrics: [metric(2, 0.5), metric(3, 0.4)],
    evals: [],
    probes: [{ step: 3, index: 0, prompt: 'p', output: 'o' }],
  });
  const rows = s.metrics('a');
  assert.deepEqual(
    rows.map((m) => [m.step, m.loss]),
    [
      [1, 1],
      [2, 0.5],
      [3, 0.4],
    ],
  );
  assert.deepEqual(
    s.metrics('a', 2, 2).map((m) => m.step),
    [2],
  );
  assert.equal(s.require('a').step, 3);
  assert.deepEqual(s.probes('a'), [{ step: 3, index: 0, prompt: 'p', output: 'o' }]);
});

test('deleting a run removes its rows; search escapes LIKE wildcards', () => {
  const s = fresh();
  s.insert(newRun('a'));
  s.insert({ ...newRun('b'), name: '100% done' });
  s.writeBatch('a', { metrics: [metric(1)], evals: [], probes: [] });
  s.addCheckpoint('a', { step: 1, path: '/x', valLoss: null, kind: 'interval', createdAt: 'now' });
  assert.deepEqual(
    s.list({ search: '100%' }).map((r) => r.id),
    ['b'],
  );
  assert.deepEqual(
    s.list({ search: '%' }).map((r) => r.id),
    ['b'],
  );
  assert.equal(s.delete('a'), true);
  assert.equal((s.db.prepare('SELECT COUNT(*) AS n FROM run_metrics').get() as { n: number }).n, 0);
  assert.equal(
    (s.db.prepare('SELECT COUNT(*) AS n FROM run_checkpoints').get() as { n: number }).n,
    0,
  );
});

test('checkpoints know which is best; settings default to auto-resume; the last config is remembered', () => {
  const s = fresh();
  s.insert(newRun('a'));
  s.addCheckpoint('a', { step: 5, path: '/5', valLoss: 1.2, kind: 'interval', createdAt: 't' });
  s.addCheckpoint('a', { step: 10, path: '/10', valLoss: 1.4, kind: 'interval', createdAt: 't' });
  s.update('a', { bestStep: 5, bestValLoss: 1.2 });
  assert.deepEqual(
    s.checkpoints('a').map((c) => [c.step, c.isBest]),
    [
      [5, true],
      [10, false],
    ],
  );
  assert.deepEqual(s.settings(), { autoResume: true });
  assert.deepEqual(s.setSettings({ autoResume: false }), { autoResume: false });
  assert.deepEqual(s.lastConfig(), config);
  assert.throws(() => s.update('zz', { name: 'x' }), /no run with id "zz"/);
});

test('the gradient norm of a step is stored and read back; steps stored before 004 read null', () => {
  const db = new Database(':memory:');
  db.pragma('foreign_keys = ON');
  runsMigration.up(db);
  const s = new RunStore(db);
  s.insert(newRun('old'));
  // A step written by a version without the grad_norm column.
  db.prepare(
    `INSERT INTO run_metrics (run_id, step, epoch, loss, lr, tokens_per_second, tokens, memory_bytes, time)
     VALUES ('old', 1, 0.1, 2.5, 1e-4, 100, 64, NULL, 1)`,
  ).run();
  // Its config as that version wrote it: no clipping field.
  db.prepare(`UPDATE runs SET config = json_remove(config, '$.gradClipNorm')`).run();
  gradNormMigration.up(db);
  assert.equal(s.metrics('old')[0]!.gradNorm, null, 'an old row has no norm');
  assert.equal(s.require('old').config.gradClipNorm, 0, 'an old run was trained without clipping');
  s.insert(newRun('new'));
  assert.equal(s.require('new').config.gradClipNorm, 1, 'a new run clips at 1 by default');
  s.writeBatch('old', {
    metrics: [metric(2), { ...metric(3), gradNorm: null }],
    evals: [],
    probes: [],
  });
  assert.deepEqual(
    s.metrics('old').map((m) => [m.step, m.gradNorm]),
    [
      [1, null],
      [2, 0.5],
      [3, null],
    ],
  );
});

test('a config written before gradAccumulation was retired still loads, without the key', () => {
  // The schema stays strict for every other unknown key.
  assert.throws(() => runConfigSchema.parse({ model: 'm', dataset: 'd', batchSize: 2 }));
  const parsed = runConfigSchema.parse({ model: 'm', dataset: 'd', gradAccumulation: 8 });
  assert.deepEqual(parsed, config);
  assert.equal('gradAccumulation' in parsed, false);

  // A stored run (config and OOM overrides) and the remembered last config of an old version.
  const s = fresh();
  s.insert(newRun('a'));
  s.db
    .prepare(
      `UPDATE runs SET config = json_set(config, '$.gradAccumulation', 2), overrides = ? WHERE id = 'a'`,
    )
    .run(JSON.stringify({ gradAccumulation: 8, sequenceLength: 128 }));
  s.setSetting('runs.lastConfig', { ...config, gradAccumulation: 4 });
  const a = s.require('a');
  assert.deepEqual(a.config, config);
  assert.equal('gradAccumulation' in a.config, false);
  assert.deepEqual(a.overrides, { sequenceLength: 128 });
  assert.deepEqual(s.lastConfig(), config);
});
