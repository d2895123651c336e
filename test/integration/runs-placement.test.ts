// The trainer's placement report reaches the run's details: the worker sends it in 'ready', the
// supervisor keeps it as placement.json in the run folder, runs.show returns it.

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Run, RunDetail } from '../../contract/index.ts';
import { runsHandlers } from '../../core/runs/service.ts';
import { runsFixture, type RunsFixture } from './runs-fixtures.ts';

let f: RunsFixture;
const settled = ['completed', 'cancelled', 'paused', 'failed', 'interrupted'];

function untilSettled(id: string): Promise<Run> {
  return new Promise((resolve) => {
    const check = () => {
      const r = f.runStore.require(id);
      if (!settled.includes(r.state)) return false;
      resolve(r);
      return true;
    };
    if (check()) return;
    const off = f.events.subscribe('runs.state', (r) => {
      if (r.id === id) setImmediate(() => check() && off());
    });
  });
}

describe('run placement report (real trainer)', { timeout: 300_000 }, () => {
  before(async () => {
    f = await runsFixture();
    f.datasets.add('cycle', { train: 8, validation: 2, token: (w, t) => 100 + ((w + t) % 7) });
  });
  after(() => f.close());

  it('runs.show returns the placement of a CPU run, read from placement.json', async () => {
    const run = await f.service.create({
      model: f.modelId,
      dataset: 'cycle',
      preset: 'custom',
      loraRank: 4,
      loraAlpha: 8,
      loraTargets: ['attn_q', 'attn_v'],
      learningRate: 1e-3,
      warmupSteps: 0,
      effectiveBatch: 1,
      sequenceLength: 32,
      maxSteps: 2,
      evalInterval: 2,
      checkpointInterval: 2,
      earlyStopping: false,
      threads: 2,
    });
    const handlers = runsHandlers(f.service, f.runStore);
    const show = () =>
      (handlers['runs.show'] as (q: object, c: never) => RunDetail)(
        { id: run.id },
        undefined as never,
      );
    const done = await untilSettled(run.id);
    assert.equal(done.state, 'completed', done.stateReason ?? '');

    const folder = f.runStore.require(run.id).folder;
    assert.ok(existsSync(join(folder, 'placement.json')), 'placement.json is in the run folder');
    assert.deepEqual(
      readdirSync(folder).filter((n) => n.includes('.tmp')),
      [],
      'no temp file is left behind',
    );
    const { placement } = show();
    assert.ok(placement, 'runs.show returns the placement report');
    assert.ok(
      (placement.nodes.CPU ?? 0) > 0,
      `nodes on the CPU backend: ${JSON.stringify(placement.nodes)}`,
    );
    assert.equal(
      Object.values(placement.nodes).reduce((a, b) => a + b, 0),
      placement.nNodes,
      'the nodes per backend add up to the graph',
    );
    assert.deepEqual(placement.cpuOps, [], 'a CPU run has no fallback ops');
  });
});
