// A run that teaches a tiny Llama 2-format model four code words (real datasets domain, real
// trainer): the compare tests ask it one and expect the trained answer from the adapter only.
import assert from 'node:assert/strict';
import type { Run } from '../../contract/index.ts';
import type { Engine } from '../../core/engine.ts';
import type { TinyModelType } from '../fixtures/tiny-model.ts';
import { addModelAndChat, chatLine, runToEnd } from './engine-fixture.ts';

export const codePairs = [
  { q: 'Code for Amber?', a: 'apple' },
  { q: 'Code for Basil?', a: 'cherry' },
  { q: 'Code for Cedar?', a: 'lemon' },
  { q: 'Code for Dune?', a: 'melon' },
];

/** The run that learns the code words in 80 steps: small, fast, and sure to learn them. */
export function codesRunConfig(modelId: string, datasetId: string): Record<string, unknown> {
  return {
    model: modelId,
    dataset: datasetId,
    preset: 'custom',
    loraRank: 16,
    loraAlpha: 32,
    loraTargets: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'],
    lrSchedule: 'cosine',
    learningRate: 5e-3,
    maxSteps: 80,
    warmupSteps: 5,
    effectiveBatch: 4,
    sequenceLength: 32,
    validationShare: 0,
    checkpointInterval: 1000,
    earlyStopping: false,
    finalAdapter: 'last',
    threads: 2,
  };
}

/** Adds the tiny model, imports the pairs, trains 80 steps; returns the completed run. */
export async function trainCodes(
  e: Engine,
  scratch: string,
  over: Record<string, unknown> = {},
  type: TinyModelType = 'q8_0',
): Promise<{ run: Run; modelId: string }> {
  const { modelId, datasetId } = await addModelAndChat(
    e,
    scratch,
    'codes.jsonl',
    codePairs.map(({ q, a }) => chatLine(q, a)),
    type,
  );
  const run = await runToEnd(
    e,
    {
      ...codesRunConfig(modelId, datasetId),
      ...over,
    },
    'codes',
  );
  assert.equal(run.state, 'completed', run.stateReason ?? '');
  assert.ok(run.adapterPath);
  return { run, modelId };
}
