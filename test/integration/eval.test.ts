/**
 * Batch evaluation through the whole engine with a run trained in the test: answers of base and
 * tuned over a prompt file (progress, cancel, resume), the blind vote in seeded order that
 * persists across a restart with a win rate and Wilson interval that match the votes, reference
 * scores, and perplexity: the tuned variant's loss on its training windows is below the base's,
 * and its loss on the validation windows equals the native trainer's own evaluation.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EvalSet, Run, VoteChoice } from '../../contract/index.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { windowSamples } from '../../core/eval/service.ts';
import { exactMatch, leftVariant, wilson } from '../../core/eval/stats.ts';
import { codePairs, trainCodes } from './compare-fixture.ts';

let dir: string;
let dataDir: string;
let engine: Engine;
let run: Run;
let modelId: string;
let promptFile: string;

const greedy = { temperature: 0, maxTokens: 6 };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  dataDir = join(dir, 'data');
  engine = createEngine({ dataDir });
  // One of the four conversations is held out; the trainer evaluates it at the last step.
  ({ run, modelId } = await trainCodes(
    engine,
    dir,
    { validationShare: 0.25, evalInterval: 80 },
    'f32',
  ));
  promptFile = join(dir, 'prompts.jsonl');
  const lines = [
    ...codePairs.map((p) => ({ prompt: p.q, reference: p.a })),
    ...Array.from({ length: 8 }, (_, i) => ({ prompt: `Say something about ${i}.` })),
  ];
  writeFileSync(promptFile, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
});
after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('batch evaluation (real trainer, real chat)', { timeout: 900_000 }, () => {
  let setId = '';

  it('answers every prompt with both variants; blind order by seed; votes persist across a restart', async () => {
    const progress: EvalSet[] = [];
    const off = engine.events.subscribe('eval.progress', (s) => progress.push(s));
    const created = await engine.dispatcher.call('eval.create', {
      runId: run.id,
      prompts: promptFile,
      sampling: greedy,
      orderSeed: 7,
      device: 'cpu',
    });
    setId = created.id;
    assert.deepEqual(created.labels, ['base', 'codes']);
    await engine.evals.idle();
    off();
    const { set, items } = await engine.dispatcher.call('eval.show', { id: setId });
    assert.equal(set.state, 'completed');
    assert.equal(set.total, 12);
    assert.equal(set.answered, 12);
    assert.ok(
      progress.some((p) => p.answered > 0 && p.answered < 12),
      'progress while answering',
    );
    assert.ok(
      items.every((i) => i.leftVariant === null),
      'identities hidden before reveal',
    );

    // Vote: B (the tuned) wins where it gave the trained answer, else alternate tie / A / both bad.
    const votes: VoteChoice[] = ['tie', 'right', 'both-bad', 'left'];
    const cast: { index: number; vote: VoteChoice }[] = items.map((it, k) => ({
      index: it.index,
      vote: votes[k % votes.length]!,
    }));
    for (const c of cast) await engine.dispatcher.call('eval.vote', { id: setId, ...c });

    await engine.close();
    engine = createEngine({ dataDir });
    const again = await engine.dispatcher.call('eval.show', { id: setId });
    assert.deepEqual(
      again.items.map((i) => i.vote),
      cast.map((c) => c.vote),
      'votes persist across a restart',
    );
    const revealed = await engine.dispatcher.call('eval.reveal', { id: setId });
    assert.equal(revealed.revealed, true);
    const shown = await engine.dispatcher.call('eval.show', { id: setId });
    const lefts = shown.items.map((i) => i.leftVariant);
    assert.deepEqual(
      lefts,
      shown.items.map((i) => leftVariant(7, i.index)),
      'the order is the seeded one',
    );
    assert.ok(lefts.includes(0) && lefts.includes(1), 'both orders occur');

    // The win rate and its interval follow from the votes and the revealed sides.
    let a = 0;
    let b = 0;
    for (const i of shown.items) {
      const left = i.leftVariant;
      if (i.vote === 'left') {
        if (left === 1) b++;
        else a++;
      } else if (i.vote === 'right') {
        if (left === 1) a++;
        else b++;
      }
    }
    const w = revealed.winRate;
    assert.equal(w.winsA, a);
    assert.equal(w.winsB, b);
    assert.equal(w.ties, 3);
    assert.equal(w.bothBad, 3);
    assert.equal(w.rate, b / (a + b));
    const ci = wilson(b, a + b);
    assert.equal(w.low, ci.low);
    assert.equal(w.high, ci.high);

    // Reference scores: the four code prompts have references; the tuned answers the trained ones.
    const byVariant = (i: (typeof shown.items)[number], v: 0 | 1) =>
      (i.leftVariant === v ? i.left : i.right)!;
    const refItems = shown.items.filter((i) => i.reference !== null);
    assert.equal(revealed.references?.items, 4);
    for (const v of [0, 1] as const) {
      const exact = refItems.filter((i) => exactMatch(byVariant(i, v), i.reference!)).length / 4;
      assert.equal(revealed.references!.exact[v], exact);
    }
    assert.ok(revealed.references!.exact[1] >= 0.75, 'the tuned knows the three trained codes');
    assert.equal(revealed.references!.exact[0], 0, 'the base knows none');
  });

  it('cancel keeps the answers so far; resume answers the rest', async () => {
    let ev = '';
    const cancelled = new Promise<void>((resolve) => {
      const off = engine.events.subscribe('eval.progress', (s) => {
        if (s.id !== ev || s.answered < 1) return;
        off();
        resolve();
      });
    });
    const created = await engine.dispatcher.call('eval.create', {
      runId: run.id,
      prompts: promptFile,
      sampling: { temperature: 0.8, maxTokens: 48 },
      device: 'cpu',
    });
    ev = created.id;
    await cancelled;
    const paused = await engine.dispatcher.call('eval.cancel', { id: ev });
    assert.equal(paused.state, 'paused');
    assert.ok(paused.answered >= 1 && paused.answered < 12, String(paused.answered));
    const kept = (await engine.dispatcher.call('eval.show', { id: ev })).items
      .filter((i) => i.left !== null && i.right !== null)
      .map((i) => [i.index, i.left, i.right]);
    await engine.dispatcher.call('eval.resume', { id: ev });
    await engine.evals.idle();
    const done = await engine.dispatcher.call('eval.show', { id: ev });
    assert.equal(done.set.state, 'completed');
    assert.equal(done.set.answered, 12);
    for (const [index, left, right] of kept) {
      const i = done.items.find((x) => x.index === index)!;
      assert.deepEqual([i.left, i.right], [left, right], 'answers before the cancel are kept');
    }
    assert.equal((await engine.dispatcher.call('eval.list', { runId: run.id })).length, 2);
  });

  it("perplexity: the tuned's validation loss equals the trainer's evaluation; lower on its training set", async () => {
    const set = await engine.dispatcher.call('eval.perplexity', { id: setId });
    const { evals } = await engine.dispatcher.call('runs.show', { id: run.id });
    const last = evals.at(-1);
    assert.ok(last && last.step === 80, JSON.stringify(evals));
    assert.ok(set.perplexity, 'the run has a validation split');
    const tuned = set.perplexity.loss[1];
    assert.ok(
      Math.abs(tuned - last.valLoss) < 1e-3,
      `chat-side loss ${tuned} vs the trainer's ${last.valLoss}`,
    );
    assert.ok(Math.abs(set.perplexity.perplexity[1] - Math.exp(tuned)) < 1e-9);
    assert.ok(set.general && Number.isFinite(set.general.change), JSON.stringify(set.general));
    assert.ok(set.general.tokens > 100, 'the general text was scored');
    assert.equal(set.general.change, set.general.perplexity[0] / set.general.perplexity[1] - 1);

    // On its training windows the tuned model is far more certain than the base.
    const chat = await engine.compare.chatFor(modelId, 'cpu', 2);
    const samples = windowSamples(join(run.folder, 'train.tokens'), chat.contextSize);
    const score = async (col: Awaited<ReturnType<typeof chat.column>>) => {
      let nll = 0;
      let n = 0;
      for (const s of samples) {
        const r = await col.logLikelihood(s.tokens, s.labels);
        nll += r.nll;
        n += r.count;
      }
      return nll / n;
    };
    const base = await score(await chat.column(null, { scoring: true }));
    const tunedTrain = await score(
      await chat.column({ filePath: run.adapterPath!, scale: 1 }, { scoring: true }),
    );
    assert.ok(tunedTrain < base, `tuned ${tunedTrain} < base ${base}`);
  });

  it('bad prompt files are refused with the line and what was expected', async () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"prompt": "ok"}\n{"text": "no prompt"}\n');
    await assert.rejects(
      engine.dispatcher.call('eval.create', { runId: run.id, prompts: bad, device: 'cpu' }),
      /bad\.jsonl:2: expected a non-empty "prompt"/,
    );
    const csv = join(dir, 'p.txt');
    writeFileSync(csv, 'x');
    await assert.rejects(
      engine.dispatcher.call('eval.create', { runId: run.id, prompts: csv, device: 'cpu' }),
      /a prompt set is a \.jsonl or \.csv\/\.tsv file/,
    );
  });
});
