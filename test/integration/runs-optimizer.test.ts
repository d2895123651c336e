/**
 * The optimizer settings of a run config travel to the REAL trainer, and the gradient norm it
 * reports travels back: training process -> step event -> SQLite -> `runs.metrics` / `runs.step`.
 *   - every step carries the pre-clip global gradient norm, the same value in the event, the
 *     store and runs.metrics;
 *   - gradClipNorm, weightDecay, adamBeta1 and adamBeta2 each change the trajectory (so each
 *     reaches the trainer), while a repeat of the same config reproduces it exactly;
 *   - the norm is the one before clipping: clipping to almost 0 leaves step 1's norm unchanged
 *     and stops the loss from moving;
 *   - the warm-up's first step trains at learningRate / warmupSteps (contract, docs/runs.md).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  runMetricSchema,
  type Run,
  type RunConfigInput,
  type RunMetric,
} from '../../contract/index.ts';
import { runsHandlers } from '../../core/runs/service.ts';
import { runsFixture, type RunsFixture } from './runs-fixtures.ts';

let f: RunsFixture;
const STEPS = 6;

const base = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  model: f.modelId,
  dataset: 'cycle',
  preset: 'custom',
  loraRank: 4,
  loraAlpha: 8,
  loraTargets: ['attn_q', 'attn_v'],
  learningRate: 1e-2,
  lrSchedule: 'constant',
  warmupSteps: 0,
  effectiveBatch: 2,
  sequenceLength: 32,
  maxSteps: STEPS,
  validationShare: 0,
  earlyStopping: false,
  evalInterval: 100,
  checkpointInterval: 100,
  finalAdapter: 'last',
  threads: 2,
  seed: 11,
  ...over,
});

/** Runs a config to completion; returns the run and every metric its step events carried. */
async function train(over: Partial<RunConfigInput>): Promise<{ run: Run; events: RunMetric[] }> {
  const events: RunMetric[] = [];
  let id = '';
  const early: RunMetric[] = [];
  const off = f.events.subscribe('runs.step', (p) => {
    // The event payload as the contract describes it (what the UI and the CLI receive).
    const metrics = p.metrics.map((m) => runMetricSchema.parse(m));
    if (!id) early.push(...metrics);
    else if (p.id === id) events.push(...metrics);
  });
  const settled = ['completed', 'failed', 'cancelled', 'paused', 'interrupted'];
  try {
    const created = await f.service.create(base(over));
    id = created.id;
    const run = await new Promise<Run>((resolve) => {
      const check = () => {
        const r = f.runStore.require(id);
        if (settled.includes(r.state)) {
          offState();
          resolve(r);
        }
      };
      const offState = f.events.subscribe('runs.state', (r) => {
        if (r.id === id) setImmediate(check);
      });
      check();
    });
    assert.equal(run.state, 'completed', run.stateReason ?? '');
    return { run, events };
  } finally {
    off();
  }
}

describe('optimizer settings and the gradient norm (real trainer)', { timeout: 600_000 }, () => {
  before(async () => {
    f = await runsFixture();
    f.datasets.add('cycle', {
      train: 16,
      validation: 0,
      token: (w, t) => 100 + ((w + 3 * t) % 11),
    });
  });
  after(() => f.close());

  let plain: { run: Run; events: RunMetric[] };

  it('every step reports its gradient norm: event, store and runs.metrics agree', async () => {
    plain = await train({});
    const { run, events } = plain;
    assert.equal(run.config.gradClipNorm, 1, 'clipping at 1 by default');
    assert.deepEqual(
      events.map((m) => m.step),
      Array.from({ length: STEPS }, (_, i) => i + 1),
    );
    for (const m of events) {
      assert.ok(
        m.gradNorm !== null && Number.isFinite(m.gradNorm) && m.gradNorm > 0,
        `step ${m.step}: a positive finite norm (got ${m.gradNorm})`,
      );
    }
    const stored = f.runStore.metrics(run.id);
    assert.deepEqual(
      stored.map((m) => [m.step, m.gradNorm]),
      events.map((m) => [m.step, m.gradNorm]),
      'the store keeps the norm each event carried',
    );
    const handlers = runsHandlers(f.service, f.runStore);
    const served = (await (
      handlers['runs.metrics'] as (q: object, c: never) => RunMetric[] | Promise<RunMetric[]>
    )({ id: run.id, fromStep: 0 }, undefined as never)) as RunMetric[];
    assert.deepEqual(
      served.map((m) => runMetricSchema.parse(m).gradNorm),
      events.map((m) => m.gradNorm),
      'runs.metrics serves it',
    );
  });

  it('a repeat of the same config reproduces the trajectory exactly', async () => {
    const again = await train({});
    assert.deepEqual(
      again.events.map((m) => [m.loss, m.gradNorm]),
      plain.events.map((m) => [m.loss, m.gradNorm]),
    );
  });

  it('gradClipNorm, weightDecay, adamBeta1 and adamBeta2 each reach the trainer', async () => {
    const traj = (e: RunMetric[]) => JSON.stringify(e.map((m) => [m.loss, m.gradNorm]));
    const same = traj(plain.events);
    for (const over of [
      { gradClipNorm: 0 },
      { weightDecay: 0.5 },
      { adamBeta1: 0.5 },
      { adamBeta2: 0.5 },
    ] satisfies Partial<RunConfigInput>[]) {
      const r = await train(over);
      const [field, value] = Object.entries(over)[0]!;
      assert.equal(r.run.config[field as keyof Run['config']], value, `${field} is stored`);
      assert.notEqual(traj(r.events), same, `${field} = ${value} changes the trajectory`);
      assert.equal(r.events[0]!.gradNorm, plain.events[0]!.gradNorm, 'same start, same norm');
    }
  });

  it('the norm is taken before clipping; clipping to almost 0 freezes the loss', async () => {
    const clipped = await train({ gradClipNorm: 1e-9 });
    const [first] = clipped.events;
    assert.equal(first!.gradNorm, plain.events[0]!.gradNorm, 'step 1: the unclipped norm');
    assert.ok(first!.gradNorm! > 1e-3, 'far above the clip threshold');
    // AdamW's update of a gradient far below its eps (1e-8) is tiny: the adapter barely moves,
    // so the loss stays where it started while the unclipped run learns.
    const losses = clipped.events.map((m) => m.loss);
    const learned = plain.events.at(-1)!.loss;
    assert.ok(
      learned < Math.min(...losses) - 0.3,
      `clipped losses ${losses.map((x) => x.toFixed(3)).join(' ')} stay above the unclipped run's ${learned.toFixed(3)}`,
    );
  });

  it('the first warm-up step trains at learningRate / warmupSteps, the last at learningRate', async () => {
    const { events } = await train({ warmupSteps: 4, maxSteps: 5 });
    assert.deepEqual(
      events.map((m) => m.lr),
      [1e-2 / 4, 2e-2 / 4, 3e-2 / 4, 1e-2, 1e-2],
    );
  });
});
