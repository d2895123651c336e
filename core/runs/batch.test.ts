import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunMetric } from '../../contract/index.ts';
import { WriteBatch, type PendingWrites } from './batch.ts';

const m = (step: number): RunMetric => ({
  step,
  epoch: 0,
  loss: 1,
  lr: 1e-4,
  tokensPerSecond: 1,
  tokens: step,
  memoryBytes: null,
  gradNorm: null,
  time: 0,
});

function recorder() {
  const writes: PendingWrites[] = [];
  const ui: number[][] = [];
  return {
    writes,
    ui,
    sinks: {
      write: (b: PendingWrites) => writes.push(b),
      ui: (ms: RunMetric[]) => ui.push(ms.map((x) => x.step)),
    },
  };
}

test('metrics are written once per flushEvents, evals and probes ride along, nothing twice', () => {
  const r = recorder();
  const b = new WriteBatch(r.sinks, { flushEvents: 3, flushMs: 60_000, uiMs: 60_000 });
  b.metric(m(1));
  b.eval({ step: 1, valLoss: 2, time: 0 });
  b.metric(m(2));
  assert.equal(r.writes.length, 0, 'below the batch size nothing is written');
  b.metric(m(3));
  assert.equal(r.writes.length, 1);
  assert.deepEqual(
    r.writes[0]!.metrics.map((x) => x.step),
    [1, 2, 3],
  );
  assert.equal(r.writes[0]!.evals.length, 1);
  b.probe({ step: 3, index: 0, prompt: 'p', output: 'o' });
  b.flush();
  assert.equal(r.writes.length, 2);
  assert.deepEqual(r.writes[1], {
    metrics: [],
    evals: [],
    probes: [{ step: 3, index: 0, prompt: 'p', output: 'o' }],
  });
  b.flush();
  assert.equal(r.writes.length, 2, 'an empty batch is not written');
  b.close();
  assert.deepEqual(r.ui, [[1, 2, 3]], 'close sends the metrics the UI has not seen, once');
});

test('the timers write and send what is pending; close stops them', async () => {
  const r = recorder();
  const b = new WriteBatch(r.sinks, { flushEvents: 1000, flushMs: 40, uiMs: 20 });
  b.metric(m(1));
  b.metric(m(2));
  await new Promise((res) => setTimeout(res, 150));
  assert.deepEqual(r.ui, [[1, 2]], 'one UI event for the steps of one interval');
  assert.deepEqual(
    r.writes.flatMap((w) => w.metrics.map((x) => x.step)),
    [1, 2],
  );
  b.metric(m(3));
  b.close();
  const writes = r.writes.length;
  await new Promise((res) => setTimeout(res, 150));
  assert.equal(r.writes.length, writes, 'no timer fires after close');
  assert.deepEqual(r.ui, [[1, 2], [3]]);
});
