/**
 * Runs through the whole engine and the real `overnight` command: a chat dataset imported and
 * tokenized by the datasets domain, the REAL training process, and
 *   - kill -9 of the engine (the `overnight train` process) mid-run: the next engine start
 *     resumes the run from its last checkpoint; the SQLite file passes integrity_check; the
 *     step metrics are continuous;
 *   - Ctrl-C of `overnight train`: checkpoint and stop (paused); `overnight runs resume` finishes it;
 *   - kill -9 of `overnight train` and of its training process: `overnight runs resume` (whose
 *     engine start re-queues the run itself) attaches to the run and finishes it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createEngine } from '../../core/engine.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'overnight.mjs');
let dir: string;
let modelPath: string;
let datasetPath: string;
let configPath: string;

const runConfig = {
  loraRank: 4,
  loraAlpha: 8,
  loraTargets: ['attn_q', 'attn_v'],
  learningRate: 1e-3,
  warmupSteps: 0,
  effectiveBatch: 2,
  sequenceLength: 64,
  maxSteps: 120,
  evalInterval: 10,
  checkpointInterval: 5,
  validationShare: 0.1,
  earlyStopping: false,
  finalAdapter: 'last',
  threads: 2,
};

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  modelPath = (await tinyModel({ type: 'q8_0' })).path;
  datasetPath = join(dir, 'chat.jsonl');
  const lines = Array.from({ length: 60 }, (_, i) =>
    JSON.stringify({
      messages: [
        { role: 'user', content: `What is ${i} plus ${i}?` },
        { role: 'assistant', content: `${i} plus ${i} is ${2 * i}.` },
      ],
    }),
  );
  writeFileSync(datasetPath, lines.join('\n') + '\n');
  configPath = join(dir, 'run.json');
  writeFileSync(configPath, JSON.stringify(runConfig));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function startTrain(dataDir: string): ChildProcess {
  return spawn(
    process.execPath,
    [
      bin,
      '--data-dir',
      dataDir,
      'train',
      '--model',
      modelPath,
      '--dataset',
      datasetPath,
      '--preset',
      'quick',
      '--config',
      configPath,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

/** Polls the database (read-only, beside the writer: WAL) until `ok` holds. */
async function waitFor<T>(
  dataDir: string,
  read: (db: Database.Database) => T | null,
  timeoutMs = 300_000,
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    if (existsSync(join(dataDir, 'overnight.db'))) {
      const db = new Database(join(dataDir, 'overnight.db'), {
        readonly: true,
        fileMustExist: true,
      });
      try {
        const v = read(db);
        if (v !== null) return v;
      } catch {
        // tables not created yet
      } finally {
        db.close();
      }
    }
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for the database');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Process ids whose parent is `pid` (Linux /proc). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);

const exited = (p: ChildProcess) =>
  new Promise<number | null>((r) => p.once('exit', (code) => r(code)));

function checkContinuous(dataDir: string, id: string, total: number) {
  const db = new Database(join(dataDir, 'overnight.db'), { readonly: true });
  try {
    const steps = (
      db.prepare('SELECT step FROM run_metrics WHERE run_id = ? ORDER BY step').all(id) as {
        step: number;
      }[]
    ).map((r) => r.step);
    assert.deepEqual(
      steps,
      Array.from({ length: total }, (_, i) => i + 1),
      'one metric row per step, none missing',
    );
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
  } finally {
    db.close();
  }
}

describe('runs through the engine and the CLI (real trainer)', { timeout: 900_000 }, () => {
  it('kill -9 of the engine mid-run: the next start resumes the run, the database is intact', async () => {
    const dataDir = join(dir, 'kill');
    const p = startTrain(dataDir);
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const run = await waitFor(dataDir, (db) => {
      const r = db.prepare('SELECT id, step FROM runs').get() as
        { id: string; step: number } | undefined;
      const c =
        r &&
        (db.prepare('SELECT COUNT(*) AS n FROM run_checkpoints WHERE run_id = ?').get(r.id) as {
          n: number;
        });
      return r && c && r.step >= 12 && c.n > 0 ? r : null;
    });
    p.kill('SIGKILL');
    await exited(p);
    const left = await waitFor(
      dataDir,
      (db) =>
        db.prepare('SELECT state, step FROM runs WHERE id = ?').get(run.id) as {
          state: string;
          step: number;
        },
    );
    assert.equal(
      left.state,
      'running',
      `the dead engine left the run running (stderr: ${err.slice(-500)})`,
    );
    assert.ok(left.step < 120);

    const engine = createEngine({ dataDir });
    try {
      const done = new Promise<string>((resolve) => {
        engine.events.subscribe('runs.state', (r) => {
          if (r.id !== run.id) return;
          // a failed run that retries is queued again in the same tick
          setImmediate(() => {
            const now = engine.runs.store.require(run.id).state;
            if (['completed', 'failed', 'cancelled'].includes(now)) resolve(now);
          });
        });
      });
      engine.runs.start();
      const interrupted = engine.store.db
        .prepare('SELECT state_reason FROM runs WHERE id = ?')
        .pluck()
        .get(run.id) as string;
      assert.match(interrupted, /engine stopped while this run was training/);
      assert.equal(await done, 'completed');
      const { run: r } = await engine.dispatcher.call(
        'runs.show',
        { id: run.id },
        { transport: 'in-memory' },
      );
      assert.equal(r.step, 120);
      assert.ok(r.adapterPath && existsSync(r.adapterPath));
    } finally {
      await engine.close();
    }
    checkContinuous(dataDir, run.id, 120);
  });

  it('Ctrl-C checkpoints and stops `overnight train`; `overnight runs resume` completes it', async () => {
    const dataDir = join(dir, 'sigint');
    const p = startTrain(dataDir);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const run = await waitFor(dataDir, (db) => {
      const r = db.prepare('SELECT id, step FROM runs').get() as
        { id: string; step: number } | undefined;
      return r && r.step >= 6 ? r : null;
    });
    p.kill('SIGINT');
    assert.equal(await exited(p), 0, out);
    assert.match(out, /paused: Paused at step \d+/);
    const paused = await waitFor(
      dataDir,
      (db) =>
        db.prepare('SELECT state, step FROM runs WHERE id = ?').get(run.id) as {
          state: string;
          step: number;
        },
    );
    assert.equal(paused.state, 'paused');

    const list = spawnSync(process.execPath, [bin, '--data-dir', dataDir, 'runs', 'list'], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`${run.id}.*paused`));

    const resume = spawnSync(
      process.execPath,
      [bin, '--data-dir', dataDir, 'runs', 'resume', run.id],
      { cwd: root, encoding: 'utf8', timeout: 600_000 },
    );
    assert.equal(resume.status, 0, resume.stderr + resume.stdout);
    assert.match(resume.stdout, /completed: Completed 120 steps/);
    assert.match(resume.stdout, /step 120\/120 {2}loss \d/);
    checkContinuous(dataDir, run.id, 120);
  });
  it('kill -9 of `overnight train` and its trainer: `overnight runs resume` attaches and completes the run', async () => {
    const dataDir = join(dir, 'resume-after-kill');
    const p = startTrain(dataDir);
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const run = await waitFor(dataDir, (db) => {
      const r = db.prepare('SELECT id, step FROM runs').get() as
        { id: string; step: number } | undefined;
      const c =
        r &&
        (db.prepare('SELECT COUNT(*) AS n FROM run_checkpoints WHERE run_id = ?').get(r.id) as {
          n: number;
        });
      return r && c && r.step >= 12 && c.n > 0 ? r : null;
    });
    const trainers = childPids(p.pid!).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('worker.ts');
      } catch {
        return false;
      }
    });
    assert.equal(trainers.length, 1, `one training process under the engine (stderr: ${err})`);
    const trainer = trainers[0]!;
    p.kill('SIGKILL');
    process.kill(trainer, 'SIGKILL');
    await exited(p);
    for (let i = 0; alive(trainer) && i < 100; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(!alive(trainer), 'the training process is gone');
    const left = await waitFor(
      dataDir,
      (db) =>
        db.prepare('SELECT state, step FROM runs WHERE id = ?').get(run.id) as {
          state: string;
          step: number;
        },
    );
    assert.equal(left.state, 'running', 'the dead engine left the run running');
    assert.ok(left.step < 120);

    // What a user types after the crash. Its engine start marks the run interrupted and queues
    // it (autoResume); the command must join that run, not refuse it as "queued".
    const resume = spawnSync(
      process.execPath,
      [bin, '--data-dir', dataDir, 'runs', 'resume', run.id],
      { cwd: root, encoding: 'utf8', timeout: 600_000 },
    );
    assert.equal(resume.status, 0, resume.stderr + resume.stdout);
    assert.match(resume.stdout, /step 120\/120 {2}loss \d/);
    assert.match(resume.stdout, /completed: Completed 120 steps/);
    checkContinuous(dataDir, run.id, 120);

    // Again, on the completed run: it says so and succeeds.
    const again = spawnSync(
      process.execPath,
      [bin, '--data-dir', dataDir, 'runs', 'resume', run.id],
      { cwd: root, encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(again.status, 0, again.stderr);
    assert.match(
      again.stdout,
      /has already completed; nothing to resume\.\ncompleted: Completed 120 steps/,
    );
    checkContinuous(dataDir, run.id, 120);
  });
});
