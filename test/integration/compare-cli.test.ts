// `overnight chat` as a user runs it: a real process through bin/overnight.mjs, messages on
// stdin, the answer streamed to stdout. With the trained run as --adapter the model gives the
// trained answer; the base model alone does not. --json prints one answer object per message.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compareAnswerSchema, type EvalSet, type Run } from '../../contract/index.ts';
import { createEngine } from '../../core/engine.ts';
import { codePairs, trainCodes } from './compare-fixture.ts';

const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'overnight.mjs');
let dir: string;
let dataDir: string;
let run: Run;
let modelId: string;

function chat(input: string, ...args: string[]) {
  const r = spawnSync(
    process.execPath,
    [bin, 'chat', '--data-dir', dataDir, '--temperature', '0', '--max-tokens', '8', ...args],
    { cwd: root, encoding: 'utf8', input, timeout: 120_000 },
  );
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  dataDir = join(dir, 'data');
  const engine = createEngine({ dataDir });
  try {
    ({ run, modelId } = await trainCodes(engine, dir));
  } finally {
    await engine.close();
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('overnight chat and overnight eval', { timeout: 600_000 }, () => {
  it('with the run as --adapter, the answer streams the trained reply; the base does not', () => {
    const tuned = chat(
      `${codePairs[0]!.q}\n/exit\n`,
      '--model',
      modelId,
      '--adapter',
      run.id,
      '--cpu',
    );
    assert.equal(tuned.status, 0, tuned.stderr);
    assert.equal(tuned.stdout.trim(), codePairs[0]!.a);
    assert.match(tuned.stderr, /chatting with codes/);
    assert.match(tuned.stderr, /\[\d+ tokens, [\d.]+ tokens\/s\]/);

    const base = chat(`${codePairs[0]!.q}\n`, '--model', modelId, '--cpu');
    assert.equal(base.status, 0, base.stderr);
    assert.notEqual(base.stdout.trim(), codePairs[0]!.a);
    assert.ok(base.stdout.trim().length > 0, 'the base answered something');
  });

  it('--json: one answer per message; /clear; an adapter file path works too', () => {
    const r = chat(
      // (the run taught single turns: /clear starts the next question afresh)
      `${codePairs[1]!.q}\n/clear\n${codePairs[2]!.q}\n`,
      '--json',
      '--model',
      modelId,
      '--adapter',
      run.adapterPath!,
      '--cpu',
    );
    assert.equal(r.status, 0, r.stderr);
    const answers = r.stdout
      .trim()
      .split('\n')
      .map((l) => compareAnswerSchema.parse(JSON.parse(l)));
    assert.deepEqual(
      answers.map((a) => a.content.trim()),
      [codePairs[1]!.a, codePairs[2]!.a],
    );
  });

  it('a wrong --adapter or a missing --model is a clear error', () => {
    const r = chat('hi\n', '--model', modelId, '--adapter', join(dir, 'nope.gguf'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--adapter .*nope\.gguf: no run with that id and no such adapter file/);
    const u = chat('hi\n');
    assert.equal(u.status, 2);
    assert.match(u.stderr, /--model <id\|file\.gguf> is needed/);
  });

  it('overnight eval --json writes both answers and the scores; without a validation split it asks for a prompt file', () => {
    const prompts = join(dir, 'prompts.jsonl');
    writeFileSync(
      prompts,
      codePairs.map((p) => JSON.stringify({ prompt: p.q, reference: p.a })).join('\n') + '\n',
    );
    const r = spawnSync(
      process.execPath,
      [bin, 'eval', '--json', '--data-dir', dataDir, '--run', run.id, '--prompts', prompts],
      { cwd: root, encoding: 'utf8', timeout: 300_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      set: EvalSet;
      answers: { prompt: string; reference: string | null; a: string; b: string }[];
    };
    assert.equal(out.set.answered, 4);
    assert.deepEqual(
      out.answers.map((x) => x.b.trim()),
      codePairs.map((p) => p.a),
      'B (the run) gives every trained answer',
    );
    assert.ok(out.answers.every((x) => x.a.trim() !== x.reference));
    assert.deepEqual(out.set.references?.exact, [0, 1]);
    assert.equal(out.set.perplexity, null, 'the run has no validation split');
    assert.ok(out.set.general && Number.isFinite(out.set.general.change));

    const none = spawnSync(
      process.execPath,
      [bin, 'eval', '--data-dir', dataDir, '--run', run.id],
      {
        cwd: root,
        encoding: 'utf8',
      },
    );
    assert.equal(none.status, 1);
    assert.match(none.stderr, /no validation conversations to ask: give a prompt file/);
  });
});
