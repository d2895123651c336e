// Issue #13 (adapter, Ollama, PEFT exports): a tiny Llama model learns four code words with the
// real trainer; every format is exported through the engine and its verification must pass.
// The PEFT orientation and RoPE row order are checked against llama.cpp's own permutation
// expression run in numpy (independent of our code), and against a Qwen2 run (no permutation).
// Safety: existing names, traversal names, a full disk (tmpfs where mounting is allowed, an
// injected write failure everywhere), a killed export.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OvernightError, type Run } from '../../contract/index.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { writeFaults } from '../../core/export/files.ts';
import { readSafetensors } from '../../core/export/formats/peft.ts';
import { kvNumber, kvString, readGgufHeader, tensorF32 } from '../../core/export/gguf.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { trainCodes } from './compare-fixture.ts';
import { chatLine, runToEnd } from './engine-fixture.ts';

const probePrompts = ['Code for Amber?', 'Code for Basil?'];

/** Every file and folder name in `dir` (to prove nothing partial or stray is left). */
const names = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).sort() : []);

async function rejectsWith(p: Promise<unknown>, code: string, match: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof OvernightError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, match);
    return true;
  });
}

describe('export', () => {
  let dir: string;
  let e: Engine;
  let run: Run;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'overnight-export-'));
    e = createEngine({ dataDir: join(dir, 'data') });
    ({ run } = await trainCodes(e, dir, { probePrompts, checkpointInterval: 40 }));
  });
  after(async () => {
    await e.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('adapter: final adapter exported with its metadata, reloads and answers as the run', async () => {
    const out = join(dir, 'out-adapter');
    const r = await e.dispatcher.call('export.run', {
      runId: run.id,
      format: 'adapter',
      outDir: out,
    });
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    assert.equal(r.source, run.adapterPath);
    const model = e.models.get(run.modelId)!;
    const stem = `codes-${model.name.toLowerCase()}`;
    assert.equal(r.path, join(out, `${stem}.gguf`), 'named from the run and the model');
    assert.deepEqual(names(out), [`${stem}.gguf`]);
    const greedy = r.verification.checks.find((c) => c.name.includes('greedily'));
    assert.ok(greedy?.ok, 'greedy?.ok');
    assert.match(greedy.detail, /"Code for Amber\?": same: run's adapter "apple ?"/);
    const h = readGgufHeader(r.path);
    assert.equal(kvString(h, 'general.type'), 'adapter');
    assert.equal(kvString(h, 'adapter.type'), 'lora');
    assert.equal(kvNumber(h, 'adapter.lora.alpha'), 32);
    assert.equal(kvString(h, 'general.architecture'), 'llama');
    assert.equal(kvString(h, 'overnight.run.id'), run.id);
    assert.equal(kvNumber(h, 'overnight.export.step'), 80);
    assert.equal(kvNumber(h, 'overnight.lora.rank'), 16);
    assert.deepEqual(h.metadata.get('overnight.lora.targets')?.value, [
      'attn_q',
      'attn_k',
      'attn_v',
      'attn_output',
      'ffn_gate',
      'ffn_up',
      'ffn_down',
    ]);
    assert.match(kvString(h, 'general.name') ?? '', /^codes LoRA/);
    assert.deepEqual(
      r.commands.map((c) => c.command),
      [
        `llama-cli -m ${model.path} --lora ${r.path}`,
        `llama-server -m ${model.path} --lora ${r.path}`,
      ],
    );
  });

  test('adapter: a kept checkpoint, named by the user; refused without overwrite, replaced with it', async () => {
    const out = join(dir, 'out-ckpt');
    const req = {
      runId: run.id,
      format: 'adapter' as const,
      outDir: out,
      checkpoint: 40,
      name: 'at-forty',
    };
    const r = await e.dispatcher.call('export.run', req);
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    assert.equal(r.checkpoint, 40);
    assert.equal(kvNumber(readGgufHeader(r.path), 'overnight.export.step'), 40);
    const before = readFileSync(r.path);
    await rejectsWith(
      e.dispatcher.call('export.run', req),
      'CONFLICT',
      /at-forty\.gguf already exists/,
    );
    assert.deepEqual(readFileSync(r.path), before);
    const again = await e.dispatcher.call('export.run', { ...req, overwrite: true });
    assert.ok(again.verification.ok, 'again.verification.ok');
    assert.deepEqual(names(out), ['at-forty.gguf']);
    await rejectsWith(
      e.dispatcher.call('export.run', { ...req, checkpoint: 41 }),
      'NOT_FOUND',
      /no kept checkpoint at step 41 \(kept: .*40/,
    );
  });

  test('ollama: Modelfile FROM the base, ADAPTER the packaged file, stop tokens, README', async () => {
    const out = join(dir, 'out-ollama');
    const r = await e.dispatcher.call('export.run', {
      runId: run.id,
      format: 'ollama',
      outDir: out,
      name: 'Codes',
    });
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    assert.deepEqual(names(r.path), ['Codes.gguf', 'Modelfile', 'README.md']);
    const mf = readFileSync(join(r.path, 'Modelfile'), 'utf8');
    const model = e.models.get(run.modelId)!;
    assert.match(
      mf,
      new RegExp(`^FROM ${model.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'),
    );
    assert.match(mf, /^ADAPTER \.\/Codes\.gguf$/m);
    assert.match(mf, /^PARAMETER stop "<\/s>"$/m);
    assert.match(mf, /^PARAMETER temperature 0\.7$/m);
    assert.doesNotMatch(mf, /^TEMPLATE/m, 'the GGUF has a chat template: Ollama uses it');
    assert.match(
      readFileSync(join(r.path, 'README.md'), 'utf8'),
      /ollama create codes -f Modelfile/,
    );
    assert.ok(
      r.commands.some((c) => c.command === 'ollama run codes'),
      "r.commands.some((c) => c.command === 'ollama run codes')",
    );
    // A package folder is never replaced without the choice; with it, replaced whole.
    const again = { runId: run.id, format: 'ollama' as const, outDir: out, name: 'Codes' };
    await rejectsWith(e.dispatcher.call('export.run', again), 'CONFLICT', /Codes already exists/);
    const replaced = await e.dispatcher.call('export.run', { ...again, overwrite: true });
    assert.ok(replaced.verification.ok, 'replaced.verification.ok');
    assert.deepEqual(names(out), ['Codes']);
    assert.deepEqual(names(r.path), ['Codes.gguf', 'Modelfile', 'README.md']);
    assert.ok(
      r.commands.some((c) => c.command.startsWith('llama-server -m ')),
      "r.commands.some((c) => c.command.startsWith('llama-server -m '))",
    );
  });

  test('peft: names, shapes, q/k rows in Hugging Face order (llama.cpp permutation, run in numpy)', async (t) => {
    // The permutation reference needs python3 with numpy; without it that part is skipped
    // (core/export/export.test.ts still pins the row formula).
    const numpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
    if (!numpy)
      t.diagnostic('python3 with numpy is missing: the llama.cpp permute comparison is skipped');
    const out = join(dir, 'out-peft');
    const r = await e.dispatcher.call('export.run', { runId: run.id, format: 'peft', outDir: out });
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    const cfg = JSON.parse(readFileSync(join(r.path, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.r, 16);
    assert.equal(cfg.lora_alpha, 32);
    assert.deepEqual([...cfg.target_modules].sort(), [
      'down_proj',
      'gate_proj',
      'k_proj',
      'o_proj',
      'q_proj',
      'up_proj',
      'v_proj',
    ]);
    const st = readSafetensors(join(r.path, 'adapter_model.safetensors'));
    const src = readGgufHeader(run.adapterPath!);
    const base = readGgufHeader(e.models.get(run.modelId)!.path);
    const nHead = kvNumber(base, 'llama.attention.head_count')!;
    const nKv = kvNumber(base, 'llama.attention.head_count_kv')!;
    const qa = st.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!;
    const qaSrc = src.tensors.find((t) => t.name === 'blk.0.attn_q.weight.lora_a')!;
    assert.deepEqual(qa.shape, [16, qaSrc.ne[0]], 'lora_A is [r, in_features]');
    assert.deepEqual(qa.values, tensorF32(src, qaSrc), 'lora_A is copied as is');
    // llama.cpp's convert (HF -> GGUF) applies LlamaModel.permute to q/k rows; applying it to our
    // PEFT B must give back the GGUF adapter's B exactly.
    for (const [target, proj, heads] of [
      ['attn_q', 'q_proj', nHead],
      ['attn_k', 'k_proj', nKv],
    ] as const) {
      const b = st.get(`base_model.model.model.layers.1.self_attn.${proj}.lora_B.weight`)!;
      const bSrc = src.tensors.find((t) => t.name === `blk.1.${target}.weight.lora_b`)!;
      assert.deepEqual(b.shape, [bSrc.ne[1], 16], 'lora_B is [out_features, r]');
      if (numpy)
        assert.deepEqual(
          llamaCppPermute(b.values, b.shape, heads, nHead, dir),
          tensorF32(src, bSrc),
          `${proj}: llama.cpp's permute of our B is the GGUF B`,
        );
      assert.notDeepEqual(b.values, tensorF32(src, bSrc), `${proj}: the rows were reordered`);
    }
    const v = st.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')!;
    const vSrc = src.tensors.find((t) => t.name === 'blk.1.attn_v.weight.lora_b')!;
    assert.deepEqual(v.values, tensorF32(src, vSrc), 'v_proj is not permuted');

    const half = await e.dispatcher.call('export.run', {
      runId: run.id,
      format: 'peft',
      outDir: out,
      name: 'half',
      precision: 'f16',
    });
    assert.ok(half.verification.ok, JSON.stringify(half.verification, null, 1));
    assert.equal(
      readSafetensors(join(half.path, 'adapter_model.safetensors')).get(
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
      )!.dtype,
      'F16',
    );
  });

  test('names that would leave the folder are refused, nothing is written', async () => {
    const out = join(dir, 'out-names');
    for (const [name, why] of [
      ['../escape', /path separator|"\.\."/],
      ['a/b', /path separator/],
      ['/etc/passwd', /absolute path/],
      ['..', /"\.\."/],
      ['nul\0byte', /NUL/],
      ['CON', /reserved device name/],
      ['.hidden', /starts with "\."/],
    ] as const) {
      await rejectsWith(
        e.dispatcher.call('export.run', { runId: run.id, format: 'ollama', outDir: out, name }),
        'INVALID_INPUT',
        why,
      );
    }
    assert.deepEqual(names(out), []);
    assert.ok(
      !existsSync(join(dir, 'escape')) && !existsSync(join(dir, 'escape.gguf')),
      'nothing written above outDir',
    );
  });

  test('an injected write failure (disk full) leaves no file under the final name and no temp', async () => {
    for (const format of ['adapter', 'ollama', 'peft'] as const) {
      const out = join(dir, `out-fault-${format}`);
      writeFaults.beforeWrite = (_path, written) => {
        if (written > 4096)
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), {
            code: 'ENOSPC',
          });
      };
      try {
        await rejectsWith(
          e.dispatcher.call('export.run', { runId: run.id, format, outDir: out, name: 'full' }),
          'NO_SPACE',
          /disk is full/,
        );
      } finally {
        writeFaults.beforeWrite = null;
      }
      assert.deepEqual(names(out), [], format);
    }
  });

  test('a real full disk (small tmpfs, where this machine allows mounting) leaves nothing', async (t) => {
    const mnt = join(dir, 'tmpfs');
    mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=96k', 'tmpfs', mnt]);
    if (m.status !== 0) {
      t.skip(`cannot mount a tmpfs here: ${String(m.stderr).trim()}`);
      return;
    }
    try {
      for (const format of ['adapter', 'peft'] as const) {
        await rejectsWith(
          e.dispatcher.call('export.run', { runId: run.id, format, outDir: mnt, name: 'full' }),
          'NO_SPACE',
          /disk is full/,
        );
        assert.deepEqual(names(mnt), [], format);
      }
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  test(
    'a killed export leaves no file under the final name; the next export sweeps its temp',
    { timeout: 240_000 },
    async () => {
      const out = join(dir, 'out-killed');
      mkdirSync(out);
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          fileURLToPath(new URL('./export-child.ts', import.meta.url)),
          e.dataDir,
          run.id,
          out,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += String(d)));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d) => String(d).includes('writing') && resolve());
        child.on('exit', (code) =>
          reject(new Error(`the child exited (${code}) before writing: ${stderr}`)),
        );
      });
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      const left = names(out);
      assert.ok(!left.includes('killed.gguf'), left.join(', '));
      assert.equal(left.length, 1, 'the killed process left its temporary file');
      assert.match(left[0]!, /^\.killed\.gguf\.partial-\d+-[0-9a-f]+$/);
      const r = await e.dispatcher.call('export.run', {
        runId: run.id,
        format: 'adapter',
        outDir: out,
        name: 'killed',
      });
      assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
      assert.deepEqual(names(out), ['killed.gguf']);
    },
  );

  test('the CLI: overnight export prints the verified result; a bad format is a usage error', () => {
    const bin = fileURLToPath(new URL('../../bin/overnight.mjs', import.meta.url));
    const out = join(dir, 'out-cli');
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [bin, '--data-dir', e.dataDir, ...args], {
        encoding: 'utf8',
        timeout: 300_000,
      });
    const r = cli('export', '--run', run.id, '--format', 'ollama', '--out', out, '--name', 'cli');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /verification: passed/);
    assert.match(r.stdout, /\[ok\] the Modelfile parses/);
    assert.match(r.stdout, /ollama create cli -f Modelfile/);
    assert.match(r.stdout, /llama-cli -m \S+ --lora \S+cli\.gguf/);
    const j = cli(
      'export',
      '--run',
      run.id,
      '--format',
      'adapter',
      '--out',
      out,
      '--checkpoint',
      '40',
      '--json',
    );
    assert.equal(j.status, 0, j.stderr);
    const res = JSON.parse(j.stdout);
    assert.equal(res.verification.ok, true);
    assert.equal(res.checkpoint, 40);
    const bad = cli('export', '--run', run.id, '--format', 'safetensors', '--out', out);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /--format must be one of adapter, ollama, peft, merged/);
  });

  test('peft on Qwen2 (NEOX RoPE): q/k rows are not permuted', async () => {
    const qwen = await tinyModel({ type: 'q8_0', arch: 'qwen2', vocab: 'qwen2' });
    const modelId = (await e.models.add(qwen.path)).id;
    const file = join(dir, 'qwen.jsonl');
    writeFileSync(
      file,
      ['Code for Amber?', 'Code for Basil?'].map((q) => chatLine(q, 'x')).join('\n') + '\n',
    );
    const ds = await e.datasets.import({ path: file });
    assert.ok(ds.status === 'imported', "ds.status === 'imported'");
    const qrun = await runToEnd(
      e,
      {
        model: modelId,
        dataset: ds.dataset.id,
        preset: 'custom',
        maxSteps: 3,
        loraRank: 4,
        loraTargets: ['attn_q', 'attn_k'],
        sequenceLength: 64,
        validationShare: 0,
        threads: 2,
        effectiveBatch: 1,
        earlyStopping: false,
        probePrompts: ['Code for Amber?'],
      },
      'qwen',
    );
    assert.equal(qrun.state, 'completed', qrun.stateReason ?? '');
    const r = await e.dispatcher.call('export.run', {
      runId: qrun.id,
      format: 'peft',
      outDir: join(dir, 'out-qwen'),
    });
    assert.ok(r.verification.ok, JSON.stringify(r.verification, null, 1));
    const st = readSafetensors(join(r.path, 'adapter_model.safetensors'));
    const src = readGgufHeader(qrun.adapterPath!);
    const b = st.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!;
    assert.deepEqual(
      b.values,
      tensorF32(
        src,
        src.tensors.find((t) => t.name === 'blk.0.attn_q.weight.lora_b')!,
      ),
    );
    assert.deepEqual(
      JSON.parse(readFileSync(join(r.path, 'adapter_config.json'), 'utf8')).target_modules,
      ['q_proj', 'k_proj'],
    );
  });
});

/**
 * llama.cpp's LlamaModel.permute (conversion/llama.py), the same expression run in numpy on
 * `values` (shape [rows, cols]): what its HF -> GGUF converter does to q/k rows.
 */
function llamaCppPermute(
  values: Float32Array,
  shape: number[],
  heads: number,
  nHead: number,
  dir: string,
): Float32Array {
  const inFile = join(dir, 'permute-in.f32');
  const outFile = join(dir, 'permute-out.f32');
  writeFileSync(inFile, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  const py = `
import numpy as np
def permute(weights, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))
w = np.fromfile(${JSON.stringify(inFile)}, dtype=np.float32).reshape(${shape[0]}, ${shape[1]})
permute(w, ${nHead}, ${heads}).astype(np.float32).tofile(${JSON.stringify(outFile)})
`;
  const r = spawnSync('python3', ['-c', py], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const b = readFileSync(outFile);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
}
