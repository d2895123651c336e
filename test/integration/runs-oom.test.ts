/**
 * A REAL out-of-memory of the training process, under a real memory limit (no injected error
 * code), takes the OOM path: the run fails with E_OOM in plain words and, with `oomFallback`,
 * is retried with half the sequence length and completes.
 *   - address-space cap (`prlimit --as`, TrainerProcess memoryLimitBytes): the allocation of
 *     the long sequence's compute buffers fails inside the trainer;
 *   - memory cgroup limit: the kernel's OOM killer sends SIGKILL, told from `kill -9` by the
 *     cgroup's oom_kill counter (core/training/oom.ts). Skipped where no memory cgroup can be
 *     created (not root, no writable cgroup filesystem).
 * The tiny model has a 32000-token vocabulary, so the logits of a 4096-token window need about
 * 2 GB of compute buffers and a 2048-token one about half; each limit sits between the two.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Run, RunConfigInput } from '../../contract/index.ts';
import { memoryCgroupOf } from '../../core/training/oom.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { runsFixture, type RunsFixture } from './runs-fixtures.ts';

const settledStates = ['completed', 'cancelled', 'paused', 'failed', 'interrupted'];

function untilSettled(f: RunsFixture, id: string, seen: Run[]): Promise<Run> {
  return new Promise((resolve) => {
    const off = f.events.subscribe('runs.state', (r) => {
      if (r.id !== id) return;
      seen.push(r);
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

async function bigContextModel(f: RunsFixture): Promise<string> {
  const m = await tinyModel({ type: 'q8_0', nCtx: 4096 });
  return (f.models.list().find((x) => x.path === m.path) ?? (await f.models.add(m.path))).id;
}

const config = (model: string, sequenceLength: number): RunConfigInput => ({
  model,
  dataset: 'cycle',
  preset: 'custom',
  loraRank: 4,
  loraAlpha: 8,
  loraTargets: ['attn_q', 'attn_v'],
  learningRate: 1e-3,
  warmupSteps: 0,
  effectiveBatch: 1,
  sequenceLength,
  maxSteps: 3,
  evalInterval: 100,
  checkpointInterval: 100,
  validationShare: 0,
  earlyStopping: false,
  finalAdapter: 'last',
  oomFallback: true,
  maxRetries: 2,
  threads: 2,
});

/** Runs a config to the end; the failed state it went through on the way, and the end. */
async function runThrough(f: RunsFixture, cfg: RunConfigInput) {
  const seen: Run[] = [];
  const run = await f.service.create(cfg);
  const done = await untilSettled(f, run.id, seen);
  return { done, failed: seen.filter((r) => r.state === 'failed') };
}

describe(
  'a real out-of-memory takes the OOM path (real trainer, real limits)',
  { timeout: 600_000 },
  () => {
    describe('address-space cap (prlimit --as)', () => {
      let f: RunsFixture;
      before(async () => {
        // ~2 GB of address space is Node + tsx + the model; 4096 tokens need ~2 GB more, 2048 ~1 GB.
        f = await runsFixture({ trainerEnv: { OVERNIGHT_TRAINER_MEMORY_LIMIT: '3840M' } });
        f.datasets.add('cycle', { train: 4, validation: 0, token: (w, t) => 100 + ((w + t) % 7) });
      });
      after(() => f.close());

      it('fails the long sequence with E_OOM in plain words, then completes with half of it', async () => {
        const model = await bigContextModel(f);
        const { done, failed } = await runThrough(f, config(model, 4096));
        assert.ok(failed.length >= 1, 'the run failed once');
        assert.match(
          failed[0]!.stateReason ?? '',
          /^Out of memory at step 0: .*Retrying from the last checkpoint with sequence length 2048\.$/,
        );
        assert.equal(done.state, 'completed', done.stateReason ?? '');
        assert.deepEqual(done.overrides, { sequenceLength: 2048 });
        assert.equal(done.step, 3);
        assert.deepEqual(
          f.runStore.metrics(done.id).map((m) => m.step),
          [1, 2, 3],
        );
      });
    });

    describe('memory cgroup limit (the kernel OOM killer, SIGKILL)', () => {
      let f: RunsFixture | null = null;
      let cgroup: string | null = null;
      let skip: string | false = false;
      before(async () => {
        const own = memoryCgroupOf(process.pid);
        if (!own) {
          skip = 'no memory cgroup to nest one in';
          return;
        }
        const dir = join(own.dir, `overnight-test-${process.pid}`);
        try {
          mkdirSync(dir);
          // v1: memory.limit_in_bytes, v2: memory.max (needs the controller enabled above it).
          const limitFile = join(dir, own.version === 1 ? 'memory.limit_in_bytes' : 'memory.max');
          writeFileSync(limitFile, String(1000 * 1024 * 1024));
          if (own.version === 2 && existsSync(join(dir, 'memory.swap.max')))
            writeFileSync(join(dir, 'memory.swap.max'), '0');
          cgroup = dir;
        } catch (e) {
          skip = `cannot create a memory cgroup here: ${(e as Error).message}`;
          if (existsSync(dir)) rmdirSync(dir);
          return;
        }
        f = await runsFixture({ trainerEnv: { OVERNIGHT_TRAINER_CGROUP: cgroup } });
        f.datasets.add('cycle', { train: 4, validation: 0, token: (w, t) => 100 + ((w + t) % 7) });
      });
      after(async () => {
        await f?.close();
        if (cgroup) rmdirSync(cgroup);
      });

      it('reports the OOM kill as E_OOM (not a crash) and completes with half the sequence', async (t) => {
        if (skip || !f) return t.skip(skip || 'no fixture');
        const model = await bigContextModel(f);
        // 2048 tokens touch ~1.3 GB, 1024 ~0.65 GB: the 1000 MB limit kills the first only.
        const { done, failed } = await runThrough(f, config(model, 2048));
        assert.ok(failed.length >= 1, 'the run failed once');
        assert.match(
          failed[0]!.stateReason ?? '',
          /^Out of memory at step 0: .*Retrying from the last checkpoint with sequence length 1024\.$/,
        );
        assert.equal(done.state, 'completed', done.stateReason ?? '');
        assert.deepEqual(done.overrides, { sequenceLength: 1024 });
        assert.deepEqual(
          f.runStore.metrics(done.id).map((m) => m.step),
          [1, 2, 3],
        );
        const counters = readFileSync(
          join(
            cgroup!,
            existsSync(join(cgroup!, 'memory.events')) ? 'memory.events' : 'memory.oom_control',
          ),
          'utf8',
        );
        assert.match(counters, /^oom_kill [1-9]\d*$/m, 'the kernel did kill it for memory');
      });
    });
  },
);
