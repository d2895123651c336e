// Issue #3 tests 4 (a Q4_0 base learns), 6 (resume after kill -9 equals an uninterrupted run) and
// 7 (cancel within 2 s leaves a loadable checkpoint). Training runs in the worker process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCheckpoint } from '../../core/training/checkpoint.ts';
import type { TrainingEvent, TrainingJob } from '../../contract/training.ts';
import { TrainerProcess } from '../../core/training/trainer-process.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { tempDir } from './helpers.ts';
import { makeQaFiles } from './qa-data.ts';
import type { QaFiles } from './qa-data.ts';

async function runJob(job: TrainingJob, onEvent?: (e: TrainingEvent, p: TrainerProcess) => void) {
  const p = new TrainerProcess({ inheritOutput: false });
  const events: TrainingEvent[] = [];
  p.on('event', (e) => {
    events.push(e);
    onEvent?.(e, p);
  });
  p.start(job);
  const final = await p.finished;
  return {
    final,
    events,
    steps: events.flatMap((e) => (e.type === 'step' ? [e.metric] : [])),
    evals: events.flatMap((e) => (e.type === 'eval' ? [e.eval] : [])),
    p,
  };
}

describe('training runs in the worker process (tiny Q4_0 model)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let modelPath: string;
  let qa: QaFiles;
  before(async () => {
    tmp = tempDir();
    modelPath = (await tinyModel({ type: 'q4_0' })).path;
    qa = await makeQaFiles(modelPath, tmp.dir, { nTrain: 16, nEval: 8, seqLen: 32 });
  });
  after(() => tmp.cleanup());

  const job = (name: string, over: Partial<TrainingJob> = {}): TrainingJob => ({
    modelPath,
    dataPath: qa.train,
    evalDataPath: qa.eval,
    adapterPath: join(tmp.dir, name, 'adapter.gguf'),
    lora: {
      rank: 8,
      alpha: 16,
      targets: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'],
    },
    optimizer: { lr: 1e-2, weightDecay: 0.01 },
    schedule: { type: 'cosine', warmupSteps: 3, minLr: 1e-3 },
    windowsPerStep: 4,
    maxSteps: 40,
    evalInterval: 10,
    seed: 3,
    threads: 2,
    ...over,
  });

  test('test 4: train loss falls by at least half and validation loss falls', async () => {
    const r = await runJob(job('learn'));
    assert.equal(r.final.type, 'done', JSON.stringify(r.final));
    const first = r.steps[0]!.loss;
    const lastAvg = r.steps.slice(-4).reduce((s, e) => s + e.loss, 0) / 4;
    assert.ok(lastAvg <= first / 2, `train loss ${first.toFixed(3)} -> ${lastAvg.toFixed(3)}`);
    assert.ok(r.evals.length >= 2);
    const ready = r.events.find((e) => e.type === 'ready');
    assert.ok(ready);
    assert.ok(
      r.evals.at(-1)!.valLoss < r.evals[0]!.valLoss,
      `val loss ${r.evals.map((e) => e.valLoss.toFixed(3)).join(' -> ')}`,
    );
    const s = r.steps.at(-1)!;
    assert.ok(s.tokensPerSecond > 0 && s.memoryBytes! > 0 && s.tokens > 0 && s.lr > 0);
  });

  test('test 6: N steps, kill -9, resume for N equals 2N steps in one go (loss within 1e-4)', async () => {
    const N = 6;
    const full = await runJob(
      job('full', { maxSteps: 2 * N, checkpoint: { dir: join(tmp.dir, 'full-ck'), interval: N } }),
    );
    assert.equal(full.final.type, 'done');
    const ckDir = join(tmp.dir, 'killed-ck');
    let killedAt = -1;
    const killed = await runJob(
      job('killed', { maxSteps: 2 * N, checkpoint: { dir: ckDir, interval: N } }),
      (e, p) => {
        if (e.type === 'checkpoint' && killedAt < 0) {
          killedAt = e.step;
          p.kill('SIGKILL');
        }
      },
    );
    assert.equal(killedAt, N);
    assert.equal(killed.final.type, 'error');
    assert.match((killed.final as { message: string }).message, /SIGKILL/);
    const resumed = await runJob(
      job('killed', {
        maxSteps: 2 * N,
        checkpoint: { dir: ckDir, interval: N, resumeFrom: ckDir },
      }),
    );
    assert.equal(resumed.final.type, 'done', JSON.stringify(resumed.final));
    assert.equal(resumed.steps[0]!.step, N + 1);
    const a = full.steps.at(-1)!;
    const b = resumed.steps.at(-1)!;
    assert.equal(b.step, 2 * N);
    assert.ok(Math.abs(a.loss - b.loss) < 1e-4, `final loss ${a.loss} vs resumed ${b.loss}`);
    assert.ok(Math.abs(full.evals.at(-1)!.valLoss - resumed.evals.at(-1)!.valLoss) < 1e-4);
    assert.equal(b.tokens, a.tokens);
  });

  test('test 7: cancel returns within 2 s and leaves the last checkpoint loadable', async () => {
    const ckDir = join(tmp.dir, 'cancel-ck');
    let sentAt = 0;
    const r = await runJob(
      job('cancel', { maxSteps: 100000, checkpoint: { dir: ckDir, interval: 2 } }),
      (e, p) => {
        if (e.type === 'step' && e.metric.step === 3 && !sentAt) {
          sentAt = Date.now();
          p.cancel();
        }
      },
    );
    const took = Date.now() - sentAt;
    assert.equal(r.final.type, 'done');
    assert.equal((r.final as { status: string }).status, 'cancelled');
    assert.ok(took < 2000, `cancel took ${took} ms`);
    const ck = readCheckpoint(ckDir);
    assert.ok(ck.meta.step >= 2);
    // and it resumes
    const res = await runJob(
      job('cancel', { maxSteps: ck.meta.step + 1, checkpoint: { dir: ckDir, resumeFrom: ckDir } }),
    );
    assert.equal(res.final.type, 'done', JSON.stringify(res.final));
    assert.equal(res.steps.at(-1)!.step, ck.meta.step + 1);
  });

  test('checkpoint-now and pause: a manual checkpoint, then a pause checkpoint and done(paused)', async () => {
    const ckDir = join(tmp.dir, 'pause-ck');
    const r = await runJob(
      job('pause', { maxSteps: 1000, evalInterval: 0, checkpoint: { dir: ckDir } }),
      (e, p) => {
        if (e.type === 'step' && e.metric.step === 2) p.checkpointNow();
        if (e.type === 'checkpoint' && e.kind === 'manual') p.pause();
      },
    );
    const cks = r.events.filter((e) => e.type === 'checkpoint');
    assert.deepEqual(
      cks.map((e) => (e.type === 'checkpoint' ? e.kind : '')),
      ['manual', 'pause'],
    );
    assert.equal(r.final.type, 'done');
    assert.equal((r.final as { status: string }).status, 'paused');
    assert.equal(readCheckpoint(ckDir).meta.step, (r.final as { step: number }).step);
  });

  test('a corrupt or missing checkpoint fails before training with E_CHECKPOINT', async () => {
    const r = await runJob(
      job('missing', {
        checkpoint: { dir: join(tmp.dir, 'x'), resumeFrom: join(tmp.dir, 'nope') },
      }),
    );
    assert.equal(r.final.type, 'error');
    assert.equal((r.final as { code: string }).code, 'E_CHECKPOINT');
    assert.equal(r.steps.length, 0);
    const bad = join(tmp.dir, 'bad.ovck');
    writeFileSync(bad, 'OVCKPT01garbage');
    const r2 = await runJob(
      job('corrupt', { checkpoint: { dir: join(tmp.dir, 'y'), resumeFrom: bad } }),
    );
    assert.equal((r2.final as { code: string }).code, 'E_CHECKPOINT');
  });

  test('a checkpoint made with another LoRA rank is refused before training, naming the field', async () => {
    const ckDir = join(tmp.dir, 'match-ck');
    const made = await runJob(
      job('match-a', { maxSteps: 1, evalInterval: 0, checkpoint: { dir: ckDir, interval: 1 } }),
    );
    assert.equal(made.final.type, 'done');
    const lora = { ...job('x').lora, rank: 4 };
    const r = await runJob(
      job('match-b', { lora, checkpoint: { dir: join(tmp.dir, 'match-b-ck'), resumeFrom: ckDir } }),
    );
    assert.equal(r.final.type, 'error');
    assert.equal((r.final as { code: string }).code, 'E_CHECKPOINT');
    assert.match((r.final as { message: string }).message, /rank = 8, this job has 4/);
    assert.equal(r.steps.length, 0);
  });
});
