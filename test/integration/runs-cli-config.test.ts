/**
 * A config the app wrote is accepted by `overnight train --config` unchanged. The first run is
 * created the way the New-run form creates one (every field, a preset changed by hand: "custom"),
 * with the real engine, datasets domain and training process on a tiny model; its config comes
 * back through `runs.clone` (what "Clone config" and `runs show --json` give), is written to a
 * file, and `overnight train --config` (in process, core/cli/main.ts) trains it. The second
 * run's stored config must equal the file, field by field.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  presets,
  runConfigSchema,
  runSchema,
  type Run,
  type RunConfig,
} from '../../contract/index.ts';
import { main } from '../../core/cli/main.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';

let dir: string;
let dataDir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  dataDir = join(dir, 'data');
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['--data-dir', dataDir, ...args], {
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
  });
  return { code, out, err };
}

function untilSettled(engine: Engine, id: string): Promise<Run> {
  const settled = ['completed', 'failed', 'cancelled', 'paused', 'interrupted'];
  return new Promise((resolve) => {
    const check = async () => {
      const { run } = await engine.dispatcher.call('runs.show', { id });
      if (settled.includes(run.state)) {
        off();
        resolve(run);
      }
    };
    const off = engine.events.subscribe('runs.state', (r) => {
      if (r.id === id) setImmediate(() => void check());
    });
    void check();
  });
}

describe('overnight train --config with a config the app wrote', { timeout: 600_000 }, () => {
  let cloned: RunConfig;

  it('the app creates a custom run and clones its config', async () => {
    const model = await tinyModel({ type: 'q8_0' });
    const datasetFile = join(dir, 'chat.jsonl');
    writeFileSync(
      datasetFile,
      Array.from({ length: 30 }, (_, i) =>
        JSON.stringify({
          messages: [
            { role: 'user', content: `What is ${i} plus one?` },
            { role: 'assistant', content: `${i} plus one is ${i + 1}.` },
          ],
        }),
      ).join('\n') + '\n',
    );
    const engine = createEngine({ dataDir });
    try {
      const call = engine.dispatcher.call;
      const m = await call('models.add', { path: model.path });
      const imported = await call('datasets.import', { path: datasetFile });
      assert.equal(imported.status, 'imported');
      if (imported.status !== 'imported') return;
      // What the New-run form sends: every field (schema defaults, the Quick preset), then the
      // user's edits, which turn the preset into "custom".
      const quick = presets.find((p) => p.id === 'quick')!.config;
      const form = runConfigSchema.parse({
        ...quick,
        model: m.id,
        dataset: imported.dataset.id,
        preset: 'custom',
        loraRank: 4,
        loraAlpha: 8,
        effectiveBatch: 2,
        sequenceLength: 64,
        maxSteps: 4,
        evalInterval: 2,
        checkpointInterval: 2,
        validationShare: 0.2,
        earlyStopping: false,
        gradClipNorm: 0.5,
        weightDecay: 0.01,
        threads: 2,
        probePrompts: ['What is 3 plus one?'],
      });
      const run = await call('runs.create', { config: form });
      const done = await untilSettled(engine, run.id);
      assert.equal(done.state, 'completed', done.stateReason ?? '');
      cloned = await call('runs.clone', { id: run.id });
      assert.equal(cloned.preset, 'custom');
      assert.deepEqual(cloned, form, 'the clone is the config the form sent');
      const shown = await call('runs.show', { id: run.id });
      assert.deepEqual(shown.run.config, cloned, 'runs show gives the same config');
    } finally {
      await engine.close();
    }
  });

  it('train --config accepts it unchanged and the new run stores exactly that config', async () => {
    assert.ok(cloned, 'the first test made a config');
    const file = join(dir, 'run.json');
    writeFileSync(file, JSON.stringify(cloned, null, 2));
    const r = await cli('--json', 'train', '--config', file);
    assert.equal(r.code, 0, `train --config refused the app's config: ${r.err}`);
    const run = runSchema.parse(JSON.parse(r.out));
    assert.equal(run.state, 'completed', run.stateReason ?? '');
    assert.deepEqual(run.config, cloned, 'the stored config is the file, field by field');

    const shown = await cli('--json', 'runs', 'show', run.id);
    assert.equal(shown.code, 0, shown.err);
    const detail = JSON.parse(shown.out) as { run: Run };
    assert.deepEqual(detail.run.config, cloned);
  });

  it('an unknown --preset is refused with every choice the schema allows', async () => {
    const file = join(dir, 'run.json');
    const bad = await cli('train', '--config', file, '--preset', 'fast');
    assert.equal(bad.code, 2);
    assert.match(
      bad.err,
      /--preset must be one of quick, balanced, thorough, custom \(got "fast"\)/,
    );
  });
});
