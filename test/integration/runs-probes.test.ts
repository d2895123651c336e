/**
 * Probe samples are asked the way a chat dataset teaches: through the whole engine (the real
 * datasets domain, the real training process), a tiny Llama 2-format model trained on a few
 * question/answer conversations answers a probe with a training question with the trained
 * answer; the same probe on the (practically) untrained model does not. The probe is shown
 * under the user's prompt text.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Run, RunProbe } from '../../contract/index.ts';
import type { Engine } from '../../core/engine.ts';
import { codePairs as pairs, codesRunConfig } from './compare-fixture.ts';
import { chatLine, openEngineWithChat, runToEnd, type EngineWithChat } from './engine-fixture.ts';

let fx: EngineWithChat;
let engine: Engine;
let modelId: string;
let datasetId: string;

before(async () => {
  // The tiny model's default vocab is SentencePiece with Llama 2's chat template:
  // <s>[INST] question [/INST] answer </s>
  fx = await openEngineWithChat(
    'codes.jsonl',
    pairs.map(({ q, a }) => chatLine(q, a)),
  );
  ({ engine, modelId, datasetId } = fx);
});
after(() => fx?.close());

/** Runs a config to its end; returns the run and its probe samples (as the UI gets them). */
async function train(over: Record<string, unknown>): Promise<{ run: Run; probes: RunProbe[] }> {
  const seen: { id: string; probes: RunProbe[] }[] = [];
  const offP = engine.events.subscribe('runs.probe', (p) => seen.push(p));
  const run = await runToEnd(engine, {
    ...codesRunConfig(modelId, datasetId),
    probePrompts: [pairs[0]!.q],
    ...over,
  });
  offP();
  return { run, probes: seen.filter((p) => p.id === run.id).flatMap((p) => p.probes) };
}

describe('probe samples on a chat dataset (real trainer)', { timeout: 900_000 }, () => {
  it('a probe with a training question shows the trained answer; on the untrained model it does not', async () => {
    const trained = await train({ learningRate: 5e-3, maxSteps: 80 });
    assert.equal(trained.run.state, 'completed', trained.run.stateReason ?? '');
    const last = trained.probes.at(-1);
    assert.ok(last, 'the run sampled its probe');
    assert.equal(last.step, 80);
    assert.equal(last.prompt, pairs[0]!.q, "the probe is shown under the user's prompt text");
    // The model answers the turn and stops at the end of turn (</s>), nothing after it.
    assert.equal(last.output.trim(), pairs[0]!.a, JSON.stringify(last.output));

    // Practically the base model: one step at a learning rate that changes nothing.
    const base = await train({ learningRate: 1e-12, maxSteps: 1, warmupSteps: 0 });
    assert.equal(base.run.state, 'completed', base.run.stateReason ?? '');
    const b = base.probes.at(-1);
    assert.ok(b);
    assert.notEqual(b.output.trim(), pairs[0]!.a, 'the base model does not know the answer');
  });
});
