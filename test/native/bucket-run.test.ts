// Issue #8 item 1, as a user met it: chat-like data with mixed answer lengths (most answers 2-3
// tokens, some 40-90), sequence length 256, a validation file and a validation pass after every
// step. Validation windows and training windows fall into many output-row buckets, evaluated and
// trained in alternation; the worker used to die at step 1 (SIGABRT in get_rows).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TrainingEvent } from '../../contract/training.ts';
import { TrainerProcess } from '../../core/training/trainer-process.ts';
import { buildWindows, writeTokenData } from '../../native/ts/token-data.ts';
import type { Sample } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { tempDir } from './helpers.ts';

const SEQ = 256;

function chatSamples(n: number, seed: number): Sample[] {
  let s = seed >>> 0;
  const rnd = (lo: number, hi: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + Math.floor((s / 4294967296) * (hi - lo));
  };
  const out: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const prompt = Array.from({ length: rnd(10, 30) }, () => rnd(100, 1000));
    const answer = Array.from({ length: i % 4 === 3 ? rnd(40, 91) : rnd(2, 4) }, () =>
      rnd(100, 1000),
    );
    const tokens = [1, ...prompt, ...answer, 2];
    out.push({ tokens, trainMask: tokens.map((_, t) => t > prompt.length) });
  }
  return out;
}

let tmp: { dir: string; cleanup: () => void };
before(() => {
  tmp = tempDir();
});
after(() => tmp.cleanup());

test('a run with validation after every step over mixed-length answers completes (no crash, no retry)', async () => {
  const modelPath = (await tinyModel({ type: 'f32', nHeadKv: 2 })).path;
  const train = join(tmp.dir, 'train.tok');
  const ev = join(tmp.dir, 'eval.tok');
  writeTokenData(train, SEQ, buildWindows(chatSamples(28, 1), SEQ, 'pack'), true);
  const evalWindows = buildWindows(chatSamples(12, 2), SEQ, 'single');
  writeTokenData(ev, SEQ, evalWindows, true);
  // the validation windows cover several buckets (multiples of 32 trained tokens)
  const buckets = new Set(
    evalWindows.map((w) => Math.ceil(w.labels.filter((l) => l >= 0).length / 32)),
  );
  assert.ok(buckets.size >= 3, `validation buckets ${[...buckets].join()}`);

  const p = new TrainerProcess({ inheritOutput: false });
  const events: TrainingEvent[] = [];
  p.on('event', (e) => events.push(e));
  p.start({
    modelPath,
    dataPath: train,
    evalDataPath: ev,
    adapterPath: join(tmp.dir, 'adapter.gguf'),
    lora: {
      rank: 4,
      alpha: 8,
      targets: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'],
    },
    optimizer: { lr: 1e-3, clipNorm: 1 },
    schedule: { type: 'constant' },
    windowsPerStep: 2,
    maxSteps: 5,
    evalInterval: 1,
    seed: 4,
    threads: 2,
  });
  const final = await p.finished;
  assert.equal(final.type, 'done', JSON.stringify(final));
  const steps = events.filter((e) => e.type === 'step');
  const evals = events.filter((e) => e.type === 'eval');
  assert.equal(steps.length, 5);
  assert.ok(evals.length >= 5, `${evals.length} validation passes`);
  for (const e of evals)
    assert.ok(e.type === 'eval' && Number.isFinite(e.eval.valLoss), JSON.stringify(e));
  for (const e of steps)
    assert.ok(e.type === 'step' && Number.isFinite(e.metric.loss), JSON.stringify(e));
});
