// The pipe between the engine and the training process, end to end over real child_process IPC:
// both sides parse what they receive (contract/training.ts) and refuse a malformed message with
// an error that names the field, instead of crashing or using half of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TrainingEvent, TrainingJob } from '../../contract/training.ts';
import { TrainerProcess, workerEntry } from './trainer-process.ts';

/** A job that parses (the files need not exist: neither test gets that far). */
const job: TrainingJob = {
  modelPath: 'm.gguf',
  dataPath: 'd.tok',
  adapterPath: 'a.gguf',
  lora: {},
  optimizer: { lr: 1e-3 },
  schedule: { type: 'constant' },
  windowsPerStep: 1,
  maxSteps: 3,
};

test(
  'an event from the training process that does not parse ends the run with E_PROTOCOL naming the field',
  { timeout: 30_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ov-pipe-'));
    try {
      // A stand-in for the worker that sends a step whose metric has a text loss, then waits.
      const script = join(dir, 'bad-worker.mjs');
      writeFileSync(
        script,
        `process.on('message', () => {
        process.send({ type: 'log', message: 'hello' });
        process.send({ type: 'step', totalSteps: 3, stepMs: 5, metric: { step: 1, epoch: 0,
          loss: 'low', lr: 0.001, tokensPerSecond: 10, tokens: 4, memoryBytes: null,
          gradNorm: 1, time: 0 } });
        setTimeout(() => {}, 60_000);
      });`,
      );
      const p = new TrainerProcess({
        inheritOutput: false,
        worker: { path: script, execArgv: [] },
      });
      const events: TrainingEvent[] = [];
      p.on('event', (e) => events.push(e));
      const t0 = Date.now();
      p.start(job);
      const final = await p.finished;
      assert.equal(final.type, 'error');
      assert.equal(final.code, 'E_PROTOCOL');
      assert.match(final.message, /malformed message from the training process/);
      assert.match(final.message, /metric\.loss/);
      // the good message before it arrived; nothing of the bad one did; the child was stopped
      assert.deepEqual(
        events.map((e) => e.type),
        ['log', 'error'],
      );
      assert.ok(Date.now() - t0 < 30_000, 'the child was killed, not waited for');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'the worker answers a malformed command with a log line and a bad job with E_CONFIG naming the field',
  { timeout: 30_000 },
  async () => {
    const w = workerEntry();
    const child = fork(w.path, [], {
      execArgv: w.execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const got: TrainingEvent[] = [];
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    child.on('message', (m: TrainingEvent) => got.push(m));
    child.send({ type: 'jump', height: 3 });
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (got.length) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    assert.equal(got[0]?.type, 'log');
    assert.match(
      (got[0] as { message: string }).message,
      /ignored: malformed command from the engine: type/,
    );
    child.send({
      type: 'start',
      job: { ...job, windowsPerStep: 0 },
    });
    assert.equal(await exited, 1);
    const err = got.at(-1);
    assert.equal(err?.type, 'error');
    assert.equal((err as { code: string }).code, 'E_CONFIG');
    assert.match(
      (err as { message: string }).message,
      /the training job is not valid: windowsPerStep/,
    );
  },
);
