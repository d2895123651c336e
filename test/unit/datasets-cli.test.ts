// `overnight datasets ...` in process (core/cli/main.ts with captured output): import with
// problems refuses (exit 1) until --accept-problems; list/show/stats/preview with --json.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../core/cli/main.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

const sample = new URL('../../resources/sample-dataset.jsonl', import.meta.url).pathname;
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['--data-dir', join(dir, 'data'), ...args], {
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
  });
  return { code, out, err };
}

describe('overnight datasets', () => {
  it('imports, refuses problems until accepted, lists, shows, computes stats and previews', async () => {
    const r = await cli('datasets', 'import', sample, '--json');
    assert.equal(r.code, 0, r.err);
    const imported = JSON.parse(r.out) as {
      status: string;
      dataset: { id: string; records: number };
    };
    assert.equal(imported.status, 'imported');
    assert.equal(imported.dataset.records, 50);
    const id = imported.dataset.id;

    const bad = join(dir, 'qa.csv');
    writeFileSync(bad, 'q,a\nWhy?,Because.\nHow?\n');
    const refused = await cli(
      'datasets',
      'import',
      bad,
      '--format',
      'completion',
      '--map',
      'prompt=q,completion=a',
    );
    assert.equal(refused.code, 1);
    assert.match(
      refused.out,
      /qa\.csv:3: error: expected 2 fields \(as in the header\), found 1 fields/,
    );
    assert.match(refused.err, /--accept-problems/);
    const accepted = await cli(
      'datasets',
      'import',
      bad,
      '--format',
      'completion',
      '--map',
      'prompt=q,completion=a',
      '--accept-problems',
    );
    assert.equal(accepted.code, 0, accepted.err);
    assert.match(accepted.out, /Imported 1 records/);

    const usage = await cli('datasets', 'import', bad, '--format', 'yaml');
    assert.equal(usage.code, 2);

    const list = JSON.parse((await cli('datasets', 'list', '--json')).out) as unknown[];
    assert.equal(list.length, 2);
    assert.match((await cli('datasets', 'show', id)).out, /format\s+openai/);

    const m = await tinyModel({ vocab: 'qwen2' });
    const added = JSON.parse((await cli('models', 'add', m.path, '--json')).out) as { id: string };
    const stats = await cli(
      'datasets',
      'stats',
      id,
      '--model',
      added.id,
      '--seq-len',
      '256',
      '--json',
    );
    assert.equal(stats.code, 0, stats.err);
    const s = JSON.parse(stats.out) as {
      records: number;
      trainedTokens: number;
      histogram: { counts: number[] };
    };
    assert.equal(s.records, 50);
    assert.ok(s.trainedTokens > 0);
    const human = await cli('datasets', 'stats', id, '--model', added.id);
    assert.match(human.out, /trained tokens/);
    const preview = await cli('datasets', 'preview', id, '--model', added.id, '--index', '0');
    assert.match(
      preview.out,
      /\[\[Water boils at 100 °C \(212 °F\) at sea level\.<\|im_end\|>\]\]/,
    );
    assert.equal((await cli('datasets', 'stats', id)).code, 2, '--model is required');

    assert.equal((await cli('datasets', 'remove', id)).code, 0);
    assert.equal((await cli('datasets', 'remove', id)).code, 1);
  });
});
