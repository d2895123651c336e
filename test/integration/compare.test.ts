/**
 * Compare through the whole engine: a tiny Llama 2-format model is trained (real datasets
 * domain, real trainer process) on a few question/answer conversations; then a conversation
 * with a base column, the run's final adapter and a kept checkpoint (exported on first use)
 * answers a training question. The tuned columns give the trained answer, the base does not.
 * Streaming events add up to the stored answers; the conversation survives an engine restart
 * (SQLite); regenerate, edit-last, stop, clear and the Markdown export work on it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Conversation, Run } from '../../contract/index.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { createInMemoryClient } from '../../core/rpc/in-memory.ts';
import { codePairs, trainCodes } from './compare-fixture.ts';

const pairs = codePairs;

let dir: string;
let dataDir: string;
let engine: Engine;
let modelId: string;
let run: Run;

/** Sends a message and waits until every column has answered; returns the conversation. */
async function ask(e: Engine, id: string, text: string): Promise<Conversation> {
  const c = await e.dispatcher.call('compare.send', { id, text });
  assert.equal(c.generating, true);
  await e.compare.idle();
  return e.dispatcher.call('compare.show', { id });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  dataDir = join(dir, 'data');
  engine = createEngine({ dataDir });
  ({ run, modelId } = await trainCodes(engine, dir, { checkpointInterval: 60 }));
});
after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const greedy = { temperature: 0, maxTokens: 8 };

describe(
  'compare: base and tuned side by side (real trainer, real chat)',
  { timeout: 900_000 },
  () => {
    let convId = '';

    it('lists the base, the final adapter and the kept checkpoint as variants', async () => {
      const v = await engine.dispatcher.call('compare.variants', { modelId });
      assert.deepEqual(v[0]!.variant, { kind: 'base' });
      assert.ok(v.some((x) => x.variant.kind === 'run' && x.label === run.name));
      const ck = v.find((x) => x.variant.kind === 'checkpoint' && x.variant.step === 60);
      assert.ok(ck, JSON.stringify(v));
      assert.equal(ck.needsExport, true);
    });

    it('the tuned columns give the trained answer, the base does not; tokens stream', async () => {
      const client = createInMemoryClient(engine);
      const c = await client.call('compare.create', {
        modelId,
        variants: [
          { kind: 'base' },
          { kind: 'run', runId: run.id },
          { kind: 'checkpoint', runId: run.id, step: 60 },
        ],
        sampling: greedy,
        // (auto checks the GPU's memory first: compare-memory.test.ts)
        device: 'cpu',
      });
      convId = c.id;
      assert.deepEqual(
        c.columns.map((x) => x.label),
        ['base', run.name, `${run.name} @ step 60`],
      );
      const streamed = ['', '', ''];
      const off = client.on('compare.token', (t) => {
        if (t.id === convId) streamed[t.column] += t.delta;
      });
      const done = await ask(engine, convId, pairs[0]!.q);
      off();
      assert.equal(done.generating, false);
      const answers = done.turnList[0]!.answers;
      assert.equal(answers.length, 3);
      const [base, tuned, ck] = answers;
      assert.equal(tuned!.error, null);
      assert.equal(tuned!.content.trim(), pairs[0]!.a, JSON.stringify(answers));
      assert.equal(tuned!.finish, 'end', 'the tuned column stops at the end of its turn');
      assert.notEqual(base!.content.trim(), pairs[0]!.a);
      assert.equal(ck!.error, null, ck!.error ?? '');
      assert.ok(
        existsSync(join(run.folder, 'adapter-step-60.gguf')),
        'the checkpoint was exported',
      );
      for (const a of answers) {
        assert.equal(streamed[a.column], a.content, 'the streamed text adds up to the answer');
        if (a.tokens > 1) assert.ok(a.tokensPerSecond > 0);
      }

      // A second turn: every column sees its own earlier answer.
      const two = await ask(engine, convId, pairs[1]!.q);
      assert.equal(two.turnList.length, 2);
      assert.equal(two.turnList[1]!.answers[1]!.content.trim(), pairs[1]!.a);
    });

    it('regenerate answers the same way with the same seed; edit-last replaces the message', async () => {
      const before = await engine.dispatcher.call('compare.show', { id: convId });
      await engine.dispatcher.call('compare.regenerate', { id: convId });
      await engine.compare.idle();
      const again = await engine.dispatcher.call('compare.show', { id: convId });
      assert.deepEqual(
        again.turnList[1]!.answers.map((a) => a.content),
        before.turnList[1]!.answers.map((a) => a.content),
      );
      await engine.dispatcher.call('compare.editLast', { id: convId, text: pairs[2]!.q });
      await engine.compare.idle();
      const edited = await engine.dispatcher.call('compare.show', { id: convId });
      assert.equal(edited.turnList.length, 2);
      assert.equal(edited.turnList[1]!.user, pairs[2]!.q);
      assert.equal(edited.turnList[1]!.answers[1]!.content.trim(), pairs[2]!.a);
    });

    it('stop ends the answers early and keeps what was written', async () => {
      await engine.dispatcher.call('compare.update', {
        id: convId,
        sampling: { temperature: 0.8 },
      });
      // A change to one control leaves the others as they were.
      const updated = await engine.dispatcher.call('compare.update', {
        id: convId,
        sampling: { maxTokens: 4000 },
      });
      assert.equal(updated.sampling.temperature, 0.8);
      assert.equal(updated.sampling.maxTokens, 4000);
      await engine.dispatcher.call('compare.send', { id: convId, text: 'Tell me a long story.' });
      const stopped = await engine.dispatcher.call('compare.stop', { id: convId });
      assert.equal(stopped.generating, false);
      const last = stopped.turnList.at(-1)!;
      assert.equal(last.answers.length, 3);
      for (const a of last.answers)
        assert.ok(a.finish === 'stopped' || a.finish === 'end', a.finish ?? '');
      assert.ok(last.answers.some((a) => a.finish === 'stopped'));
      await engine.dispatcher.call('compare.update', { id: convId, sampling: greedy });
    });

    it('the conversation is saved: listed and reopened after an engine restart; Markdown export', async () => {
      const shown = await engine.dispatcher.call('compare.show', { id: convId });
      await engine.close();
      engine = createEngine({ dataDir });
      const list = await engine.dispatcher.call('compare.list', {});
      assert.equal(list.length, 1);
      assert.equal(list[0]!.id, convId);
      assert.equal(list[0]!.turns, shown.turnList.length);
      const reopened = await engine.dispatcher.call('compare.show', { id: convId });
      assert.deepEqual(reopened.turnList, shown.turnList);
      assert.deepEqual(reopened.sampling, shown.sampling);

      const md = await engine.dispatcher.call('compare.markdown', { id: convId });
      assert.match(md.fileName, /\.md$/);
      assert.ok(md.markdown.includes(`**User**\n\n> ${pairs[0]!.q}`), md.markdown);
      assert.ok(
        md.markdown.includes(`### ${run.name}\n\n${shown.turnList[0]!.answers[1]!.content}`),
      );

      // The reopened conversation continues (the model loads again).
      const cont = await ask(engine, convId, pairs[3]!.q);
      assert.equal(cont.turnList.at(-1)!.answers[1]!.content.trim(), pairs[3]!.a);

      await engine.dispatcher.call('compare.clear', { id: convId });
      assert.equal(
        (await engine.dispatcher.call('compare.show', { id: convId })).turnList.length,
        0,
      );
      assert.deepEqual(await engine.dispatcher.call('compare.delete', { id: convId }), {
        deleted: true,
      });
      assert.equal((await engine.dispatcher.call('compare.list', {})).length, 0);
    });

    it('refuses a run of another model and a missing adapter file, naming them', async () => {
      await assert.rejects(
        engine.dispatcher.call('compare.create', {
          modelId,
          variants: [{ kind: 'file', path: join(dir, 'nope.gguf') }],
        }),
        /nope\.gguf does not exist/,
      );
      await assert.rejects(
        engine.dispatcher.call('compare.show', { id: 'missing' }),
        /no conversation with id "missing"/,
      );
    });
  },
);

describe('chat while a run trains', { timeout: 900_000 }, () => {
  it('both proceed: the chat answers and the run keeps taking steps', async () => {
    const steps: number[] = [];
    let id = '';
    const off = engine.events.subscribe('runs.step', (s) => {
      if (s.id === id) steps.push(...s.metrics.map((m) => m.step));
    });
    const training = await engine.runs.create({
      ...run.config,
      maxSteps: 100_000,
      checkpointInterval: 100_000,
    });
    id = training.id;
    try {
      for (const t0 = Date.now(); steps.length < 3;) {
        if (Date.now() - t0 > 120_000) throw new Error('the run took no steps');
        await new Promise((r) => setTimeout(r, 50));
      }
      const mem = await engine.dispatcher.call('compare.memory', { modelId, columns: 2 });
      assert.equal(
        mem.trainingRun,
        training.name,
        'the memory check knows the run holds the device',
      );

      const c = await engine.dispatcher.call('compare.create', {
        modelId,
        variants: [{ kind: 'base' }, { kind: 'run', runId: run.id }],
        sampling: greedy,
        device: 'cpu',
      });
      // Steps as stored (runs.metrics writes the run's pending batch first), not as the
      // throttled UI events report them: a chat answer takes about a second, the same order as
      // the event throttle, while the tiny run takes a step every ~0.1 s.
      const lastStored = async () =>
        (await engine.dispatcher.call('runs.metrics', { id })).at(-1)?.step ?? 0;
      const before = await lastStored();
      const done = await ask(engine, c.id, pairs[0]!.q);
      assert.equal(done.turnList[0]!.answers[1]!.content.trim(), pairs[0]!.a);
      const during = await lastStored();
      assert.ok(
        during > before,
        `the run took steps while the chat answered (${before} -> ${during})`,
      );
      for (const t0 = Date.now(); steps.at(-1)! <= during;) {
        if (Date.now() - t0 > 60_000)
          throw new Error('the run stopped taking steps after the chat');
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal((await engine.dispatcher.call('runs.show', { id })).run.state, 'running');
    } finally {
      off();
      await engine.dispatcher.call('runs.cancel', { id });
      // Let the training process end before the engine closes.
      for (const t0 = Date.now(); Date.now() - t0 < 30_000;) {
        if ((await engine.dispatcher.call('runs.show', { id })).run.state === 'cancelled') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  });
});
