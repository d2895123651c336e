// The pipe's schemas: what the worker sends validates, a job takes the run config's defaults, and
// a message that does not fit is refused with the field it got wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  loraTargets,
  optimizerDefaults,
  runConfigDefaults,
  type RunMetric,
} from '../../contract/runs.ts';
import { LORA_TARGETS } from '../../native/ts/binding.ts';
import {
  fatalTrainerErrors,
  parseTrainingCommand,
  parseTrainingEvent,
  parseTrainingJob,
  PipeError,
  probeMaxTokens,
  trainingEventSchema,
} from '../../contract/training.ts';

const metric: RunMetric = {
  step: 3,
  epoch: 0.5,
  loss: 2.25,
  lr: 1e-4,
  tokensPerSecond: 900,
  tokens: 1200,
  memoryBytes: 1 << 20,
  gradNorm: null,
  time: Date.now(),
};

test('a step carries the contract RunMetric unchanged, evals and probes their own types', () => {
  const e = parseTrainingEvent({ type: 'step', metric, totalSteps: 10, stepMs: 12 });
  assert.ok(e.type === 'step');
  assert.deepEqual(e.metric, metric);
  const ev = parseTrainingEvent({ type: 'eval', eval: { step: 3, valLoss: 2, time: 1 } });
  assert.ok(ev.type === 'eval' && ev.eval.valLoss === 2);
  const p = { step: 3, index: 0, prompt: 'hi', output: 'hello' };
  assert.deepEqual(parseTrainingEvent({ type: 'probe', probe: p }), { type: 'probe', probe: p });
});

test('a malformed event is refused with a PipeError naming the field', () => {
  const bad = [
    [
      { type: 'step', metric: { ...metric, loss: 'low' }, totalSteps: 10, stepMs: 1 },
      /metric\.loss/,
    ],
    [{ type: 'step', totalSteps: 10, stepMs: 1 }, /metric/],
    [{ type: 'error', code: 'E_WHATEVER', message: 'x' }, /code/],
    [{ type: 'teleport' }, /type/],
    ['not an object', /message/],
  ] as const;
  for (const [raw, field] of bad) {
    assert.throws(
      () => parseTrainingEvent(raw),
      (e: unknown) =>
        e instanceof PipeError &&
        /^malformed message from the training process: /.test(e.message) &&
        field.test(e.message),
      JSON.stringify(raw),
    );
  }
  assert.equal(trainingEventSchema.safeParse({ type: 'log', message: 'ok' }).success, true);
  assert.throws(() => parseTrainingCommand({ type: 'jump' }), /malformed command from the engine/);
});

test("a job's omitted values are the run config's defaults; a bad one names the field", () => {
  const job = parseTrainingJob({
    modelPath: 'm.gguf',
    dataPath: 'd.tok',
    adapterPath: 'a.gguf',
    lora: {},
    optimizer: { lr: 1e-3 },
    schedule: { type: 'cosine' },
    windowsPerStep: 2,
    epochs: 1,
    probes: { prompts: [{ text: 'hi' }] },
  });
  assert.equal(job.lora.rank, runConfigDefaults.loraRank);
  assert.equal(job.lora.alpha, runConfigDefaults.loraAlpha);
  assert.deepEqual(job.lora.targets, runConfigDefaults.loraTargets);
  assert.equal(job.seed, runConfigDefaults.seed);
  assert.equal(job.threads, runConfigDefaults.threads);
  assert.equal(job.optimizer.beta1, optimizerDefaults.adamBeta1);
  assert.equal(job.optimizer.eps, optimizerDefaults.adamEps);
  assert.equal(job.optimizer.clipNorm, optimizerDefaults.gradClipNorm);
  assert.equal(job.probes?.maxTokens, probeMaxTokens);
  assert.throws(
    () => parseTrainingJob({ ...job, windowsPerStep: 0 }),
    /the training job is not valid: windowsPerStep/,
  );
  assert.throws(
    () => parseTrainingJob({ ...job, maxSteps: null, epochs: undefined }),
    /epochs: give maxSteps or epochs > 0/,
  );
  assert.throws(() => parseTrainingJob({ ...job, lora: { targets: ['attn_x'] } }), /lora\.targets/);
});

test('a crash is retried, a bad config or a broken pipe is not', () => {
  for (const c of ['E_CONFIG', 'E_MODEL', 'E_CHECKPOINT', 'E_PROTOCOL'] as const)
    assert.ok(fatalTrainerErrors.has(c), c);
  for (const c of ['E_CRASH', 'E_OOM', 'E_NATIVE'] as const)
    assert.ok(!fatalTrainerErrors.has(c), c);
});

test("the binding's LoRA target list is the contract's (the contract is the source)", () => {
  assert.deepEqual([...LORA_TARGETS], [...loraTargets]);
});
