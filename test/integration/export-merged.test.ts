// Issue #13, merged model through the engine: a tiny Q4_K_M Llama learns four code words with the
// real trainer (one pair held out as the validation split); `export.run` with format 'merged'
// runs the native merge in its own process and verifies the file against the base and the
// adapter, the greedy answers against base + the run's adapter (identical for F16), and the
// perplexity next to base + adapter on the validation split. Also: LM Studio's models-folder
// layout, cancel, an existing file, and `overnight export --format merged` as a user runs it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { OvernightError, type ExportResult, type Run } from '../../contract/index.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { kvNumber, readGgufHeader } from '../../core/export/gguf.ts';
import { trainCodes } from './compare-fixture.ts';

const probePrompts = ['Code for Amber?', 'Code for Basil?'];
const root = resolve(import.meta.dirname, '..', '..');

/** Every file and folder under `dir`, relative, sorted (proves nothing partial is left). */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(`${n}/`, ...tree(p).map((x) => `${n}/${x}`));
    else out.push(n);
  }
  return out.sort();
}

function check(r: ExportResult, re: RegExp) {
  const c = r.verification.checks.find((x) => re.test(x.name));
  assert.ok(c, `no check matching ${re}: ${r.verification.checks.map((x) => x.name).join(' | ')}`);
  return c;
}

/**
 * The perplexities the check reports and the change in percent. `dNll`: the difference of the
 * mean negative log-likelihoods (nats per token), the bound the tests use: the one held-out
 * pair's answer is unknown to the adapter (perplexity in the thousands), where a tiny logit
 * difference already moves the perplexity by a few percent.
 */
function pplChange(r: ExportResult): { merged: number; ref: number; change: number; dNll: number } {
  const c = check(r, /perplexity of the merged/);
  const m =
    /merged \S+ ([\d.]+), base \+ adapter ([\d.]+) \(([-+][\d.]+)%; mean NLL ([\d.]+) vs ([\d.]+) nats/.exec(
      c.detail,
    );
  assert.ok(m, c.detail);
  return {
    merged: Number(m[1]),
    ref: Number(m[2]),
    change: Number(m[3]),
    dNll: Math.abs(Number(m[4]) - Number(m[5])),
  };
}

describe('export: merged model', () => {
  let dir: string;
  let dataDir: string;
  let e: Engine | null;
  let run: Run;
  const engine = (): Engine => e!;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'overnight-merged-'));
    dataDir = join(dir, 'data');
    e = createEngine({ dataDir });
    ({ run } = await trainCodes(e, dir, { probePrompts, validationShare: 0.25 }, 'q4_k_m'));
  });
  after(async () => {
    await e?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('F16: verified against the base, the adapter, base + adapter greedy and perplexity', async () => {
    const out = join(dir, 'out-f16');
    const jobId = 'merge-f16';
    const messages: string[] = [];
    const off = engine().events.subscribe('export.progress', (p) => {
      if (p.jobId === jobId) messages.push(`${p.phase}: ${p.message}`);
    });
    let r: ExportResult;
    try {
      r = await engine().dispatcher.call('export.run', {
        runId: run.id,
        format: 'merged',
        type: 'F16',
        outDir: out,
        name: 'codes-merged',
        jobId,
      });
    } finally {
      off();
    }
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    assert.equal(r.path, join(out, 'codes-merged-F16.gguf'));
    assert.deepEqual(tree(out), ['codes-merged-F16.gguf'], 'no partial or intermediate file');
    assert.match(
      check(r, /merged \(F16\), the others copied/).detail,
      /14 merged \(F16 ×14\), \d+ copied unchanged/,
    );
    const greedy = check(
      r,
      /answers the 2 probe prompt\(s\) greedily as base \+ the run's adapter/,
    );
    assert.ok(greedy.ok);
    assert.match(greedy.detail, /^2\/2 answers identical/);
    const ppl = pplChange(r);
    console.log(
      `F16 merge: perplexity ${ppl.merged} vs base + adapter ${ppl.ref} (${ppl.change}%, |dNLL| ${ppl.dNll})`,
    );
    assert.ok(ppl.dNll < 0.05, `F16: mean NLL within 0.05 nats of base + adapter (${ppl.dNll})`);
    assert.equal(kvNumber(readGgufHeader(r.path), 'general.file_type'), 1);
    assert.ok(
      messages.some((m) => /^write: merging tensor \d+\/\d+/.test(m)),
      messages.join('\n'),
    );
    assert.deepEqual(
      r.commands.map((c) => c.command),
      [`llama-cli -m ${r.path}`, `llama-server -m ${r.path}`, `FROM ${r.path}`],
    );
  });

  test("Q4_K_M into LM Studio's layout (publisher/model/file.gguf); perplexity next to the unmerged", async () => {
    const lms = join(dir, 'lmstudio-models');
    const r = await engine().dispatcher.call('export.run', {
      runId: run.id,
      format: 'merged',
      type: 'Q4_K_M',
      outDir: lms,
      lmstudio: true,
      name: 'codes-merged',
    });
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    assert.equal(r.path, join(lms, 'overnight', 'codes-merged', 'codes-merged-Q4_K_M.gguf'));
    assert.deepEqual(tree(lms), [
      'overnight/',
      'overnight/codes-merged/',
      'overnight/codes-merged/codes-merged-Q4_K_M.gguf',
    ]);
    assert.match(check(r, /merged \(Q4_K_M\)/).detail, /14 merged \((Q4_K|Q6_K)/);
    const ppl = pplChange(r);
    console.log(
      `Q4_K_M merge: perplexity ${ppl.merged} vs base + adapter ${ppl.ref} (${ppl.change}%, |dNLL| ${ppl.dNll})`,
    );
    assert.ok(Number.isFinite(ppl.merged) && ppl.dNll < 1, `sane bound (${ppl.dNll})`);
    assert.equal(kvNumber(readGgufHeader(r.path), 'general.file_type'), 15);

    const acme = await engine().dispatcher.call('export.run', {
      runId: run.id,
      format: 'merged',
      type: 'Q8_0',
      outDir: lms,
      lmstudio: true,
      publisher: 'acme',
      name: 'codes-merged',
    });
    assert.ok(acme.verification.ok, JSON.stringify(acme.verification, null, 1));
    assert.equal(acme.path, join(lms, 'acme', 'codes-merged', 'codes-merged-Q8_0.gguf'));
    const q8 = pplChange(acme);
    console.log(
      `Q8_0 merge: perplexity ${q8.merged} vs base + adapter ${q8.ref} (${q8.change}%, |dNLL| ${q8.dNll})`,
    );
    assert.ok(q8.dNll < 0.05, `Q8_0: mean NLL within 0.05 nats of base + adapter (${q8.dNll})`);
    await assert.rejects(
      engine().dispatcher.call('export.run', {
        runId: run.id,
        format: 'merged',
        outDir: lms,
        lmstudio: true,
        publisher: '../escape',
      }),
      (err: unknown) => err instanceof OvernightError && err.code === 'INVALID_INPUT',
    );
  });

  test('cancel mid-merge: nothing under the final name, no partial file, no empty folder', async () => {
    const lms = join(dir, 'lmstudio-cancel');
    const jobId = 'merge-cancel';
    let sent = false;
    const off = engine().events.subscribe('export.progress', (p) => {
      if (p.jobId === jobId && p.phase === 'write' && !sent) {
        sent = true;
        void engine().dispatcher.call('export.cancel', { jobId });
      }
    });
    try {
      await assert.rejects(
        engine().dispatcher.call('export.run', {
          runId: run.id,
          format: 'merged',
          type: 'Q4_K_M',
          outDir: lms,
          lmstudio: true,
          name: 'cancelled',
          jobId,
        }),
        (err: unknown) => err instanceof OvernightError && err.code === 'CANCELLED',
      );
    } finally {
      off();
    }
    assert.ok(sent);
    assert.deepEqual(tree(lms), [], 'the LM Studio folders made for it are gone too');
  });

  test('a folder without the space: NO_SPACE before anything is written (2 MiB tmpfs)', async (t) => {
    const mnt = join(dir, 'small-disk');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (err) {
      return t.skip(`cannot mount a tmpfs here (needs root): ${String(err).split('\n')[0]}`);
    }
    try {
      await assert.rejects(
        engine().dispatcher.call('export.run', {
          runId: run.id,
          format: 'merged',
          type: 'Q8_0',
          outDir: mnt,
          lmstudio: true,
          name: 'too-big',
        }),
        (err: unknown) =>
          err instanceof OvernightError &&
          err.code === 'NO_SPACE' &&
          /the Q8_0 merge needs about [\d.]+ MiB .*MiB are free; nothing was written/.test(
            err.message,
          ),
      );
      assert.deepEqual(tree(mnt), [], 'not even the LM Studio folders');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  test('an existing file is a CONFLICT without overwrite and replaced with it', async () => {
    const out = join(dir, 'out-conflict');
    const req = {
      runId: run.id,
      format: 'merged' as const,
      type: 'Q8_0' as const,
      outDir: out,
      name: 'taken',
    };
    await engine().dispatcher.call('export.run', { ...req, type: 'F16' });
    writeFileSync(join(out, 'taken-Q8_0.gguf'), 'keep me');
    await assert.rejects(
      engine().dispatcher.call('export.run', req),
      (err: unknown) =>
        err instanceof OvernightError &&
        err.code === 'CONFLICT' &&
        /taken-Q8_0\.gguf already exists/.test(err.message),
    );
    const r = await engine().dispatcher.call('export.run', { ...req, overwrite: true });
    assert.ok(r.verification.ok);
    assert.deepEqual(tree(out), ['taken-F16.gguf', 'taken-Q8_0.gguf']);
  });

  test('CLI: overnight export --format merged --type Q8_0 --lmstudio <dir>', async () => {
    await e!.close();
    e = null;
    const lms = join(dir, 'lms-cli');
    const cli = (...args: string[]) =>
      spawnSync(
        process.execPath,
        [
          join(root, 'bin', 'overnight.mjs'),
          'export',
          '--data-dir',
          dataDir,
          '--run',
          run.id,
          ...args,
        ],
        {
          cwd: root,
          encoding: 'utf8',
          timeout: 300_000,
        },
      );
    const r = cli('--format', 'merged', '--type', 'Q8_0', '--lmstudio', lms, '--name', 'cli');
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /verification: passed/);
    assert.deepEqual(tree(lms), ['overnight/', 'overnight/cli/', 'overnight/cli/cli-Q8_0.gguf']);
    const bad = cli('--format', 'merged', '--type', 'Q3_K', '--out', join(dir, 'x'));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--type must be one of F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M/);
    const wrong = cli('--format', 'adapter', '--type', 'Q8_0', '--out', join(dir, 'x'));
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stderr, /--type is for --format merged/);
  });
});
