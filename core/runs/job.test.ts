import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runConfigSchema } from '../../contract/index.ts';
import { parseTrainingJob } from '../../contract/training.ts';
import { physicalCores } from '../system/cpu.ts';
import { calibrationJob, exportJob, jobFor } from './job.ts';

const cfg = (over: object = {}) => runConfigSchema.parse({ model: 'm', dataset: 'd', ...over });
const run = (over: object = {}) => ({
  id: 'r1',
  name: 'night',
  folder: '/data/runs/r1',
  totalSteps: 0,
  config: cfg(over),
});
/** A llama-3-shaped 1B model (128k vocab) on a device with 24 GB free. */
const dims = {
  layers: 16,
  embd: 2048,
  ffn: 8192,
  heads: 32,
  kvHeads: 8,
  vocab: 128256,
  weightBytes: 0.8e9,
};
const memory = { dims, freeBytes: 24e9 };
const inputs = { modelPath: '/m.gguf', trainFile: '/t.tok', validationFile: '/v.tok', memory };

test('jobFor passes every config value the trainer uses, explicitly, and parses', () => {
  const r = run({
    loraRank: 8,
    loraAlpha: 4,
    learningRate: 1e-3,
    adamBeta1: 0.8,
    adamBeta2: 0.95,
    weightDecay: 0.1,
    gradClipNorm: 0.5,
    threads: 3,
    seed: 7,
  });
  const job = jobFor(r, null, inputs);
  assert.deepEqual(job.lora, { rank: 8, alpha: 4, targets: r.config.loraTargets, seed: 7 });
  assert.deepEqual(job.optimizer, {
    lr: 1e-3,
    beta1: 0.8,
    beta2: 0.95,
    weightDecay: 0.1,
    clipNorm: 0.5,
  });
  assert.equal(job.threads, 3);
  assert.equal(jobFor(run({ threads: 0 }), null, inputs).threads, physicalCores(), 'auto');
  assert.equal(job.gpuLayers, 999, 'gpuLayers -1 (all) is 999 to the trainer');
  assert.equal(jobFor(run({ backend: 'cpu' }), null, inputs).gpuLayers, 0);
  assert.equal(jobFor(run({ gpuLayers: 5 }), null, inputs).gpuLayers, 5);
  assert.equal(job.adapterPath, join(r.folder, 'adapter-last.gguf'));
  assert.deepEqual(job.metadata, { 'overnight.run.id': 'r1', 'overnight.run.name': 'night' });
  parseTrainingJob(job);
});

test('jobFor checkpoints at gcd(eval, checkpoint) when the best checkpoint must be kept', () => {
  const best = jobFor(run({ evalInterval: 30, checkpointInterval: 100 }), '/ck.ovck', inputs);
  assert.deepEqual(best.checkpoint, {
    dir: '/data/runs/r1/trainer',
    interval: 10,
    resumeFrom: '/ck.ovck',
  });
  const plain = jobFor(
    run({
      evalInterval: 30,
      checkpointInterval: 100,
      earlyStopping: false,
      finalAdapter: 'last',
    }),
    null,
    inputs,
  );
  assert.equal(plain.checkpoint?.interval, 100);
  const noVal = jobFor(run({ validationShare: 0, earlyStopping: false }), null, inputs);
  assert.equal(noVal.evalInterval, 0);
  assert.equal(noVal.checkpoint?.interval, 100);
});

test('a stored step count wins over the config; probes only when there are prompts', () => {
  assert.equal(jobFor({ ...run({ maxSteps: 50 }), totalSteps: 120 }, null, inputs).maxSteps, 120);
  assert.equal(jobFor(run({ maxSteps: 50 }), null, inputs).maxSteps, 50);
  assert.equal(jobFor(run(), null, inputs).probes, undefined);
  const p = jobFor(run(), null, { ...inputs, probePrompts: [{ tokens: [1, 2], label: 'hi' }] });
  assert.deepEqual(p.probes, { prompts: [{ tokens: [1, 2], label: 'hi' }] });
});

test('export and calibration are the run job with fewer steps and another output', () => {
  const r = run({ loraRank: 4 });
  const ex = exportJob(r, { step: 40, path: '/ck.ovck' }, inputs, {
    adapterPath: '/out.gguf',
    scratchDir: '/tmp/x',
  });
  const base = jobFor(r, '/ck.ovck', inputs);
  assert.deepEqual(ex.lora, base.lora);
  assert.deepEqual(ex.optimizer, base.optimizer);
  assert.equal(ex.gpuLayers, base.gpuLayers);
  assert.equal(ex.maxSteps, 40);
  assert.equal(ex.evalDataPath, null);
  assert.deepEqual(ex.checkpoint, { dir: '/tmp/x', resumeFrom: '/ck.ovck' });
  assert.equal(ex.adapterPath, '/out.gguf');
  const cal = calibrationJob(r.config, inputs, 4, '/tmp/cal');
  assert.equal(cal.maxSteps, 4);
  assert.deepEqual(cal.schedule, { type: 'constant' });
  assert.equal(cal.checkpoint, undefined);
  assert.deepEqual(cal.lora, base.lora);
  parseTrainingJob(ex);
  parseTrainingJob(cal);
});

test('jobFor resolves micro-batch, activation checkpointing and the loss chunk for the trainer', () => {
  const job = jobFor(run({ effectiveBatch: 8, microBatch: 4 }), null, inputs);
  assert.deepEqual([job.windowsPerStep, job.microBatch], [8, 4]);
  // 'auto': off while the estimate fits the device, on when it does not; 'on'/'off' as given.
  assert.equal(job.checkpointing, false, '1B at 512 tokens fits in 24 GB');
  const small = { ...inputs, memory: { dims, freeBytes: 3e9 } };
  assert.equal(jobFor(run(), null, small).checkpointing, true, 'does not fit in 3 GB without');
  assert.equal(jobFor(run({ checkpointing: 'off' }), null, small).checkpointing, false);
  assert.equal(jobFor(run({ checkpointing: 'on' }), null, inputs).checkpointing, true);
  // Loss chunk: as many rows as keep the head graph (12 x vocab x rows + 4 x E x T x B) within
  // the per-layer backward graph max(S + 5.2A, 2S + 4.6A) (estimate.ts), 16..sequence length.
  assert.equal(job.lossChunk, 414, 'microBatch 4: (654 MB - 17 MB) / (12 x 128256)');
  const chunk = (vocab: number, seq: number) =>
    jobFor(run({ sequenceLength: seq }), null, {
      ...inputs,
      memory: { dims: { ...dims, vocab }, freeBytes: 24e9 },
    }).lossChunk;
  assert.equal(chunk(128256, 512), 103, 'one window: a quarter of the layer graph');
  assert.equal(chunk(32000, 512), 415);
  assert.equal(chunk(32000, 1024), 1024, 'capped at the sequence length');
  assert.equal(chunk(16_000_000, 512), 16, 'never thinner than 16 rows');
  parseTrainingJob(job);
  assert.throws(
    () => parseTrainingJob({ ...job, windowsPerStep: 6 }),
    /windowsPerStep must be a multiple of microBatch/,
  );
});
