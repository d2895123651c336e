/**
 * The run supervisor with the REAL training process on a tiny generated model: a run from
 * queue to adapter, a kill -9 of the training process mid-run, early stopping, pause/resume,
 * and the configs that must be refused before anything starts.
 */
import assert from 'node:assert/strict';
import { existsSync, renameSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Run, RunConfigInput } from '../../contract/index.ts';
import { decideAfterCrash } from '../../core/runs/lifecycle.ts';
import { runsHandlers } from '../../core/runs/service.ts';
import { runsFixture, type RunsFixture } from './runs-fixtures.ts';

let f: RunsFixture;
const SEQ = 32;

/** Train on a repeating 7-token cycle; `overfit` validates on the same tokens in another order. */
function addDatasets(fx: RunsFixture) {
  const cycle = (w: number, t: number) => 100 + ((w + t) % 7);
  fx.datasets.add('cycle', { train: 24, validation: 4, token: cycle });
  fx.datasets.add('overfit', {
    train: 8,
    validation: 4,
    token: cycle,
    validationToken: (w, t) => 100 + (((w + t) * 3) % 7),
  });
  fx.datasets.add('empty', { train: 0, validation: 0, token: cycle });
}

const base = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  model: f.modelId,
  dataset: 'cycle',
  preset: 'custom',
  loraRank: 4,
  loraAlpha: 8,
  loraTargets: ['attn_q', 'attn_v'],
  learningRate: 1e-3,
  warmupSteps: 0,
  effectiveBatch: 2,
  sequenceLength: SEQ,
  maxSteps: 30,
  evalInterval: 10,
  checkpointInterval: 10,
  keepCheckpoints: 2,
  earlyStopping: false,
  finalAdapter: 'last',
  threads: 2,
  ...over,
});

const settledStates = ['completed', 'cancelled', 'paused', 'failed', 'interrupted'];

function untilSettled(id: string): Promise<Run> {
  const now = f.runStore.require(id);
  if (settledStates.includes(now.state)) return Promise.resolve(now);
  return new Promise((resolve) => {
    const off = f.events.subscribe('runs.state', (r) => {
      if (r.id !== id) return;
      // A failed run that retries is queued again in the same tick: look once the tick is over.
      setImmediate(() => {
        const later = f.runStore.require(id);
        if (settledStates.includes(later.state)) {
          off();
          resolve(later);
        }
      });
    });
  });
}

function untilStep(id: string, step: number): Promise<void> {
  return new Promise((resolve) => {
    const off = f.events.subscribe('runs.step', (p) => {
      if (p.id === id && p.metrics.some((m) => m.step >= step)) {
        off();
        resolve();
      }
    });
  });
}

function assertContinuous(id: string, total: number) {
  const steps = f.runStore.metrics(id).map((m) => m.step);
  assert.deepEqual(
    steps,
    Array.from({ length: total }, (_, i) => i + 1),
    'one metric row per step, none missing',
  );
}

describe('runs supervisor (real trainer)', { timeout: 600_000 }, () => {
  before(async () => {
    f = await runsFixture();
    addDatasets(f);
  });
  after(() => f.close());

  it('runs a queued config to completion: curves, probes, checkpoints, adapter', async () => {
    const steps: number[] = [];
    // A page that subscribes right after a step event and backfills must find that step: the
    // handler writes the batched rows before it reads.
    const handlers = runsHandlers(f.service, f.runStore);
    const backfillMissed: number[] = [];
    const off = f.events.subscribe('runs.step', (p) => {
      steps.push(...p.metrics.map((m) => m.step));
      const last = p.metrics.at(-1)!.step;
      const stored = (handlers['runs.metrics'] as (q: object, c: never) => { step: number }[])(
        { id: p.id, fromStep: last, toStep: last },
        undefined as never,
      );
      if (stored.length !== 1) backfillMissed.push(last);
    });
    const probes: string[] = [];
    const offP = f.events.subscribe('runs.probe', (p) =>
      probes.push(...p.probes.map((x) => x.output)),
    );
    const run = await f.service.create(base({ probePrompts: ['Hello'] }));
    assert.equal(run.totalSteps, 30);
    const done = await untilSettled(run.id);
    off();
    offP();
    assert.equal(done.state, 'completed', done.stateReason ?? '');
    assert.equal(done.step, 30);
    assert.ok(done.adapterPath && existsSync(done.adapterPath), 'the adapter file exists');
    assertContinuous(run.id, 30);
    assert.deepEqual(
      steps,
      Array.from({ length: 30 }, (_, i) => i + 1),
      'UI step events carry every step once',
    );
    assert.deepEqual(backfillMissed, [], 'runs.metrics serves every step an event announced');
    const evals = f.runStore.evals(run.id);
    assert.deepEqual(
      evals.map((e) => e.step),
      [10, 20, 30],
    );
    assert.ok(probes.length >= 3, 'a probe answer at every eval');
    assert.equal(f.runStore.probes(run.id).length, probes.length);
    const ckpts = f.runStore.checkpoints(run.id);
    assert.ok(
      ckpts.length <= 3,
      `at most keep (2) + best, got ${ckpts.map((c) => c.step).join(',')}`,
    );
    assert.equal(ckpts.at(-1)!.step, 30);
    const files = readdirSync(join(done.folder, 'checkpoints'));
    assert.deepEqual(
      files.sort(),
      ckpts.map((c) => `step-${String(c.step).padStart(7, '0')}.ovck`).sort(),
    );
    const first = f.runStore.metrics(run.id, 1, 3).map((m) => m.loss);
    const last = f.runStore.metrics(run.id, 28, 30).map((m) => m.loss);
    assert.ok(Math.min(...last) < Math.min(...first), `the loss falls (${first} -> ${last})`);
  });

  it('resumes from the last checkpoint after kill -9 of the training process; steps stay continuous', async () => {
    const run = await f.service.create(
      base({ maxSteps: 80, evalInterval: 10, checkpointInterval: 10 }),
    );
    await untilStep(run.id, 24);
    const pid = f.service.supervisor.trainerPid();
    assert.ok(pid, 'a training process runs');
    const states: string[] = [];
    const off = f.events.subscribe('runs.state', (r) => r.id === run.id && states.push(r.state));
    process.kill(pid, 'SIGKILL');
    const done = await untilSettled(run.id);
    off();
    assert.equal(done.state, 'completed', done.stateReason ?? '');
    assert.equal(done.retries, 1);
    assert.ok(
      states.includes('failed') && states.includes('queued'),
      `failed, then queued again: ${states.join(' ')}`,
    );
    assertContinuous(run.id, 80);
    assert.ok(done.adapterPath && existsSync(done.adapterPath));
  });

  it('stops early when validation loss stops improving, and ends with the best checkpoint', async () => {
    const run = await f.service.create(
      base({
        dataset: 'overfit',
        maxSteps: 200,
        evalInterval: 5,
        checkpointInterval: 50,
        earlyStopping: true,
        patience: 2,
        finalAdapter: 'best',
        learningRate: 3e-3,
      }),
    );
    const done = await untilSettled(run.id);
    assert.equal(done.state, 'completed', done.stateReason ?? '');
    assert.match(done.stateReason ?? '', /Early stopping/);
    assert.ok(done.step < 200, `stopped before the end (step ${done.step})`);
    assert.ok(done.bestStep !== null && done.bestStep < done.step);
    const best = f.runStore.checkpoints(run.id).find((c) => c.step === done.bestStep);
    assert.ok(best && best.isBest && existsSync(best.path), 'the best checkpoint is kept');
    assert.equal(done.adapterPath, join(done.folder, 'adapter-best.gguf'));
    assert.ok(existsSync(done.adapterPath!));
  });

  it('pauses with a checkpoint and resumes where it stopped', async () => {
    const run = await f.service.create(
      base({ maxSteps: 60, checkpointInterval: 100, evalInterval: 100, validationShare: 0 }),
    );
    await untilStep(run.id, 8);
    f.service.supervisor.pause(run.id);
    const paused = await untilSettled(run.id);
    assert.equal(paused.state, 'paused');
    const at = paused.step;
    assert.ok(f.runStore.checkpoints(run.id).some((c) => c.step === at && c.kind === 'pause'));
    f.service.supervisor.resume(run.id);
    const done = await untilSettled(run.id);
    assert.equal(done.state, 'completed', done.stateReason ?? '');
    assertContinuous(run.id, 60);
  });

  it('after an out-of-memory fallback shortens the sequence, resumes from the rebased checkpoint', async () => {
    const run = await f.service.create(
      base({
        sequenceLength: 4 * SEQ,
        maxSteps: 60,
        checkpointInterval: 100,
        evalInterval: 100,
        validationShare: 0,
      }),
    );
    await untilStep(run.id, 8);
    f.service.supervisor.pause(run.id);
    const paused = await untilSettled(run.id);
    assert.equal(paused.state, 'paused');
    // What the supervisor applies when the trainer reports E_OOM (lifecycle.decideAfterCrash).
    const dec = decideAfterCrash(paused.config, paused.overrides, paused.retries, {
      message: 'E_OOM',
      oom: true,
      step: paused.step,
    });
    assert.deepEqual(dec.overrides, { sequenceLength: 2 * SEQ });
    f.runStore.update(run.id, { overrides: dec.overrides });
    f.service.supervisor.resume(run.id);
    const done = await untilSettled(run.id);
    assert.equal(done.state, 'completed', done.stateReason ?? '');
    assert.match(done.stateReason ?? '', /Completed 60 steps/);
    assert.ok(
      existsSync(
        join(done.folder, 'trainer', `rebased-step-${String(paused.step).padStart(7, '0')}.ovck`),
      ),
    );
    assertContinuous(run.id, 60);
    const after = f.runStore.metrics(run.id, paused.step + 1, 60);
    assert.ok(after.every((m) => m.tokensPerSecond > 0));
  });

  it('calibrates the time estimate with real steps; a finish-by time picks the steps', async () => {
    const est = await f.service.estimate(base({ maxSteps: 100 }), true);
    assert.ok(est.time, 'a calibration ran');
    assert.equal(est.time.calibratedSteps, 4);
    assert.ok(est.time.secondsPerStep > 0 && est.time.tokensPerSecond > 0);
    assert.ok(est.time.measuredPeakBytes && est.time.measuredPeakBytes > 0);
    assert.equal(est.totalSteps, 100);
    assert.ok(Math.abs(est.time.totalSeconds - 100 * est.time.secondsPerStep) < 1e-6);

    const at = new Date(Date.now() + 3 * 60_000);
    const finishBy = `${String(at.getHours()).padStart(2, '0')}:${String(at.getMinutes()).padStart(2, '0')}`;
    const run = await f.service.create(base({ maxSteps: null, finishBy }));
    const secondsLeft = (new Date(at).setSeconds(0, 0) - Date.now()) / 1000;
    const expected = Math.floor((secondsLeft * 0.95) / run.estimate!.time!.secondsPerStep);
    assert.ok(
      Math.abs(run.totalSteps - expected) <= Math.max(2, expected * 0.05),
      `${run.totalSteps} steps, about ${expected} expected`,
    );
    f.service.supervisor.cancel(run.id);
    const done = await untilSettled(run.id);
    assert.equal(done.state, 'cancelled');
  });

  it('exports a kept checkpoint, compares runs by config, deletes a run with its files', async () => {
    const done = f.runStore.list({ state: 'completed' });
    assert.ok(done.length >= 2);
    const [a, b] = done as [Run, Run];
    const ck = f.runStore.checkpoints(a.id)[0]!;
    const path = await f.service.supervisor.exporter.kept(a.id, ck.step);
    assert.equal(path, join(a.folder, `adapter-step-${ck.step}.gguf`));
    assert.ok(existsSync(path));
    await assert.rejects(
      f.service.supervisor.exporter.kept(a.id, 9999),
      /no kept checkpoint at step 9999/,
    );

    const cmp = f.service.compare([a.id, b.id]);
    assert.equal(cmp.runs.length, 2);
    assert.equal(cmp.runs[0]!.metrics.length, a.step);
    const fields = cmp.diff.map((d) => d.field);
    const expected = Object.keys(a.config).filter(
      (k) =>
        JSON.stringify(a.config[k as keyof typeof a.config]) !==
        JSON.stringify(b.config[k as keyof typeof b.config]),
    );
    assert.ok(expected.length > 0);
    assert.deepEqual(fields.sort(), expected.sort());
    assert.ok(!fields.includes('model'), 'same model: not in the diff');

    assert.equal(f.service.delete(a.id), true);
    assert.ok(!existsSync(a.folder), 'the run folder is removed');
    assert.equal(f.runStore.get(a.id), null);
    assert.deepEqual(f.runStore.metrics(a.id), []);
  });

  it('refuses bad configs with a clear message before anything starts', async () => {
    const before = f.runStore.list().length;
    const refuse = async (over: Partial<RunConfigInput>, re: RegExp) =>
      assert.rejects(f.service.create(base(over)), (e: Error) => {
        assert.match(e.message, re);
        return true;
      });
    await refuse({ loraRank: 0 }, /loraRank: loraRank must be at least 1/);
    await refuse({ learningRate: 0 }, /learningRate must be greater than 0/);
    await refuse({ learningRate: -1 }, /learningRate must be greater than 0/);
    const ctx = f.models.require(f.modelId).contextLength;
    await refuse(
      { sequenceLength: ctx * 2 },
      new RegExp(`sequenceLength: ${ctx * 2} is beyond the model's context length \\(${ctx}\\)`),
    );
    await refuse({ dataset: 'empty' }, /dataset: "empty" is empty/);
    const model = f.models.require(f.modelId);
    renameSync(model.path, `${model.path}.moved`);
    try {
      await refuse({}, /no longer at .* \(moved or deleted\)/);
    } finally {
      renameSync(`${model.path}.moved`, model.path);
    }
    assert.equal(f.runStore.list().length, before, 'nothing was queued');
  });

  it('runs.validate returns the config and each problem as data, with its code', async () => {
    const ctx = f.models.require(f.modelId).contextLength;
    const handler = runsHandlers(f.service, f.runStore)['runs.validate'];
    const validate = async (p: { config: unknown }) => handler(p, { transport: 'in-memory' });
    // An earlier version's config (with the retired gradAccumulation) is checked, key dropped.
    const old = { ...base({ sequenceLength: ctx * 2 }), gradAccumulation: 1 };
    const two = await validate({ config: old });
    assert.equal(two.config.sequenceLength, ctx * 2);
    assert.equal('gradAccumulation' in two.config, false);
    assert.equal(two.problems.length, 1, two.problems.join(' | '));
    assert.match(two.problems[0]!, /^sequenceLength: \d+ is beyond the model's context length/);
    const v = await f.service.check(base({ model: 'no-such-model' }));
    assert.deepEqual(
      v.problems.map((p) => p.code),
      ['NOT_FOUND'],
    );
    assert.equal(v.checked, null);
    assert.deepEqual((await validate({ config: base() })).problems, []);
    await assert.rejects(validate({ config: base({ loraRank: 0 }) }), /loraRank/);
  });
});
