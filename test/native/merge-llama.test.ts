// Issue #13, merged model, checked in node-llama-cpp (the app's inference runtime): an adapter
// trained by the real trainer, merged at F16, gives the same greedy output as base + adapter on
// the trained prompts (the run's probe prompts); Q8_0 and Q4_K_M merges load, and their
// perplexity on a small text is reported next to base + adapter's. Training and merging run in
// child processes; this process loads only node-llama-cpp.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TrainingEvent } from '../../contract/training.ts';
import { TrainerProcess } from '../../core/training/trainer-process.ts';
import type { MergeOptions, MergeResult, MergeType } from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { tempDir } from './helpers.ts';
import { makeQaFiles, type QaFiles } from './qa-data.ts';

function mergeInChild(o: MergeOptions): MergeResult {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', join(import.meta.dirname, 'merge-run.ts'), JSON.stringify(o)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { ok: boolean; result: MergeResult };
  assert.ok(r.ok, out);
  return r.result;
}

describe('merged model in node-llama-cpp', () => {
  let tmp: { dir: string; cleanup: () => void };
  let basePath: string;
  let adapterPath: string;
  let qa: QaFiles;
  const merged = new Map<MergeType, string>();

  before(async () => {
    tmp = tempDir();
    basePath = (await tinyModel({ type: 'q4_k_m' })).path;
    qa = await makeQaFiles(basePath, tmp.dir, { nTrain: 8, nEval: 4, seqLen: 128, mode: 'pack' });
    adapterPath = join(tmp.dir, 'adapter.gguf');
    const p = new TrainerProcess({ inheritOutput: false });
    const events: TrainingEvent[] = [];
    p.on('event', (e) => events.push(e));
    p.start({
      modelPath: basePath,
      dataPath: qa.train,
      adapterPath,
      lora: {
        rank: 8,
        alpha: 16,
        targets: ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'],
      },
      optimizer: { lr: 5e-3 },
      schedule: { type: 'cosine', warmupSteps: 5, minLr: 5e-4 },
      windowsPerStep: 2,
      maxSteps: 60,
      seed: 1,
      threads: 2,
    });
    const final = await p.finished;
    assert.equal(final.type, 'done', JSON.stringify(final) + p.stderrTail);
    for (const type of ['F16', 'Q8_0', 'Q4_K_M'] as const) {
      const outPath = join(tmp.dir, `merged-${type}.gguf`);
      const r = mergeInChild({
        basePath,
        adapterPath,
        outPath,
        scale: 1,
        type,
        threads: 2,
        checkSpace: true,
        overwrite: false,
      });
      console.log(
        `merged ${type}: ${r.nMerged} merged, ${r.nCopied} copied, ${r.bytes} bytes, ${Math.round(r.ms)} ms`,
      );
      merged.set(type, outPath);
    }
  });
  after(() => tmp.cleanup());

  test('F16 merge = base + adapter greedy on the trained prompts; Q8_0/Q4_K_M perplexity', async () => {
    const { getLlama } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never' });
    type Model = Awaited<ReturnType<typeof llama.loadModel>>;
    const ctxOf = (model: Model, lora: string | null) =>
      model.createContext({
        contextSize: 128,
        threads: 2,
        ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
      });
    const greedy = async (model: Model, lora: string | null, prompts: number[][]) => {
      const ctx = await ctxOf(model, lora);
      try {
        const outs: number[][] = [];
        for (const prompt of prompts) {
          const seq = ctx.getSequence();
          const out: number[] = [];
          for await (const t of seq.evaluate(prompt as never, { temperature: 0 })) {
            if (Number(t) === qa.eos || out.length >= 6) break;
            out.push(Number(t));
          }
          outs.push(out);
          seq.dispose();
        }
        return outs;
      } finally {
        await ctx.dispose();
      }
    };
    const model0 = await llama.loadModel({ modelPath: basePath });
    const tokenize = (s: string): number[] =>
      [model0.tokens.bos!, ...model0.tokenize(s)].map(Number);
    // the validation split's style: BOS + prompt + answer + EOS, only the answer and EOS scored
    // (as the trainer's own evaluation), for the train and the held-out pairs
    const texts = [...qa.trainPairs, ...qa.evalPairs].map((p) => {
      const prompt = tokenize(p.prompt);
      return {
        tokens: [...prompt, ...model0.tokenize(p.answer).map(Number), qa.eos],
        from: prompt.length,
      };
    });
    const perplexity = async (model: Model, lora: string | null) => {
      const ctx = await ctxOf(model, lora);
      try {
        const seq = ctx.getSequence();
        let nll = 0;
        let n = 0;
        const full = { temperature: 1, topK: 0, topP: 1, minP: 0 };
        for (const { tokens: toks, from } of texts) {
          await seq.clearHistory();
          // position i predicts toks[i + 1]: scored for the answer and EOS
          const input = toks.map((t, i) =>
            i + 1 < toks.length && i + 1 >= from
              ? ([t, { generateNext: { probabilities: true, options: full } }] as const)
              : t,
          );
          const out = await seq.controlledEvaluate(input as never);
          for (let i = from - 1; i + 1 < toks.length; i++) {
            const p =
              (
                out[i] as { next: { probabilities?: Map<number, number> } } | undefined
              )?.next.probabilities?.get(toks[i + 1]!) ?? 0;
            nll -= Math.log(Math.max(p, 1e-30));
            n++;
          }
        }
        return Math.exp(nll / n);
      } finally {
        await ctx.dispose();
      }
    };

    const withAdapter = await greedy(model0, adapterPath, qa.trainPrompts);
    const baseOnly = await greedy(model0, null, qa.trainPrompts);
    const answers = withAdapter.map((o) => model0.detokenize(o as never).trim());
    const hits = answers.filter((a, i) => a === qa.trainPairs[i]!.answer).length;
    const ppl: [string, number][] = [
      ['base', await perplexity(model0, null)],
      ['base + adapter', await perplexity(model0, adapterPath)],
    ];
    const evalPrompts = qa.evalPairs.map((p) => tokenize(p.prompt));
    const evalWithAdapter = await greedy(model0, adapterPath, evalPrompts);
    await model0.dispose();

    const results: Record<string, { same: number; evalSame: number }> = {};
    for (const [type, path] of merged) {
      const m = await llama.loadModel({ modelPath: path });
      const got = await greedy(m, null, qa.trainPrompts);
      const evalGot = await greedy(m, null, evalPrompts);
      results[type] = {
        same: got.filter((g, i) => JSON.stringify(g) === JSON.stringify(withAdapter[i])).length,
        evalSame: evalGot.filter((g, i) => JSON.stringify(g) === JSON.stringify(evalWithAdapter[i]))
          .length,
      };
      ppl.push([`merged ${type}`, await perplexity(m, null)]);
      await m.dispose();
    }
    await llama.dispose();

    console.log(
      `trained answers with the adapter: ${hits}/${qa.trainPairs.length}: ${answers.join(', ')}`,
    );
    console.log(
      '| model | perplexity | vs base + adapter | greedy = base + adapter (train / eval prompts) |',
    );
    console.log('|---|---|---|---|');
    const ref = ppl[1]![1];
    for (const [name, v] of ppl) {
      const type = name.replace('merged ', '') as MergeType;
      const r = results[type];
      console.log(
        `| ${name} | ${v.toFixed(3)} | ${(((v - ref) / ref) * 100).toFixed(2)}% | ${r ? `${r.same}/${qa.trainPrompts.length} / ${r.evalSame}/${evalPrompts.length}` : ''} |`,
      );
    }
    assert.ok(
      hits >= Math.ceil(0.75 * qa.trainPairs.length),
      `the adapter learned: ${answers.join(', ')}`,
    );
    assert.notDeepEqual(baseOnly, withAdapter, 'the adapter changes the output');
    assert.equal(results.F16!.same, qa.trainPrompts.length, 'F16 merge: identical greedy output');
    for (const [name, v] of ppl) assert.ok(Number.isFinite(v) && v > 1, `${name}: ${v}`);
    const get = (n: string) => ppl.find(([k]) => k === n)![1];
    assert.ok(Math.abs(get('merged F16') / ref - 1) < 0.01, 'F16 within 1% of base + adapter');
    assert.ok(Math.abs(get('merged Q8_0') / ref - 1) < 0.03, 'Q8_0 within 3% of base + adapter');
    assert.ok(get('merged Q4_K_M') / ref < 1.5, 'Q4_K_M within 50% of base + adapter');
    assert.ok(get('base + adapter') < get('base'), 'the adapter lowers perplexity on the answers');
  });
});
