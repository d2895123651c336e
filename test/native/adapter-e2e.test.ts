// Issue #3 test 5: after training, node-llama-cpp (the app's inference runtime) loads the base
// model plus the exported adapter, and greedy generation reproduces the trained answers for at
// least 90% of the training prompts; the base model alone reproduces none. Training runs in the
// worker process; this process only loads node-llama-cpp.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TrainingEvent } from '../../contract/training.ts';
import { TrainerProcess } from '../../core/training/trainer-process.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { tempDir } from './helpers.ts';
import { makeQaFiles } from './qa-data.ts';

describe('exported adapter in node-llama-cpp', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => (tmp = tempDir()));
  after(() => tmp.cleanup());

  test('test 5: base + adapter reproduces >= 90% of trained answers, base alone none', async () => {
    const modelPath = (await tinyModel({ type: 'q4_0' })).path;
    const qa = await makeQaFiles(modelPath, tmp.dir, {
      nTrain: 16,
      nEval: 4,
      seqLen: 128,
      mode: 'pack',
    });
    const adapterPath = join(tmp.dir, 'adapter.gguf');
    const p = new TrainerProcess({ inheritOutput: false });
    const events: TrainingEvent[] = [];
    p.on('event', (e) => events.push(e));
    p.start({
      modelPath,
      dataPath: qa.train,
      adapterPath,
      lora: {
        rank: 16,
        alpha: 32,
        targets: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'],
      },
      optimizer: { lr: 5e-3 },
      schedule: { type: 'cosine', warmupSteps: 5, minLr: 5e-4 },
      windowsPerStep: 3, // the 16 samples pack into 3 windows of 128: one epoch per step
      maxSteps: 100,
      seed: 1,
      threads: 2,
      probes: {
        prompts: [{ tokens: qa.trainPrompts[0]!, label: qa.trainPairs[0]!.prompt }],
        maxTokens: 6,
        interval: 1000,
      },
    });
    const final = await p.finished;
    assert.equal(final.type, 'done', JSON.stringify(final) + p.stderrTail);
    const probe = events.find((e) => e.type === 'probe');
    assert.ok(probe && probe.type === 'probe');
    assert.equal(
      probe.probe.output.trim(),
      qa.trainPairs[0]!.answer,
      'the in-process probe (llama.cpp --lora path) reproduces the answer',
    );

    const { getLlama } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never' });
    const model = await llama.loadModel({ modelPath });
    const answer = async (withAdapter: boolean, prompt: number[]): Promise<string> => {
      const ctx = await model.createContext({
        contextSize: 128,
        threads: 1,
        ...(withAdapter ? { lora: { adapters: [{ filePath: adapterPath }] } } : {}),
      });
      try {
        const seq = ctx.getSequence();
        const out: number[] = [];
        for await (const t of seq.evaluate(prompt as never, { temperature: 0 })) {
          if (Number(t) === qa.eos || out.length >= 6) break;
          out.push(Number(t));
        }
        return model.detokenize(out as never).trim();
      } finally {
        await ctx.dispose();
      }
    };
    let withHits = 0;
    let baseHits = 0;
    const got: string[] = [];
    for (let i = 0; i < qa.trainPairs.length; i++) {
      const a = await answer(true, qa.trainPrompts[i]!);
      got.push(a);
      if (a === qa.trainPairs[i]!.answer) withHits++;
      if ((await answer(false, qa.trainPrompts[i]!)) === qa.trainPairs[i]!.answer) baseHits++;
    }
    await model.dispose();
    await llama.dispose();
    assert.ok(
      withHits >= Math.ceil(0.9 * qa.trainPairs.length),
      `adapter reproduced ${withHits}/${qa.trainPairs.length}: ${got.join(', ')}`,
    );
    assert.equal(baseHits, 0);
  });
});
