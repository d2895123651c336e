// Issue #3 tests 2 (defects 3 and 5), 8 (bad input) and 9 (K-quant bases), plus the other
// weight types and architectures the trainer accepts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NativeError, Trainer, loadAddon } from '../../native/ts/binding.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import type { TinyModelOptions } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, randomWindow, tempDir } from './helpers.ts';

async function trainsOn(
  opts: TinyModelOptions,
  steps = 6,
  seqLen = 32,
): Promise<{ first: number; last: number; tr: Trainer }> {
  const m = await tinyModel(opts);
  const tr = await Trainer.open(
    openOptions({ modelPath: m.path, seqLen, rank: 8, alpha: 16, threads: 2 }),
  );
  const w = [randomWindow(seqLen, 1), randomWindow(seqLen, 2)];
  let first = NaN;
  let last = NaN;
  for (let i = 0; i < steps; i++) {
    const r = await tr.step(w, adamw({ lr: 1e-2, clipNorm: 0 }));
    assert.ok(Number.isFinite(r.loss), `step ${i}: loss ${r.loss}`);
    if (i === 0) first = r.loss;
    last = r.loss;
  }
  return { first, last, tr };
}

async function rejects(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof NativeError, `expected NativeError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

describe('base models the trainer accepts', () => {
  test('defect 5: a Q4_0 base trains (weights are not repacked for the CPU)', async () => {
    const { first, last, tr } = await trainsOn({ type: 'q4_0' });
    assert.deepEqual(tr.info.weightTypes.sort(), ['q4_0']);
    assert.ok(last < first, `loss ${first} -> ${last}`);
    tr.close();
  });

  test('defect 3: a 16-layer model with LoRA on all 7 targets fits its graph budget', async () => {
    const { first, last, tr } = await trainsOn(
      { type: 'q8_0', nLayer: 16, nEmbd: 64, nFf: 128 },
      2,
      16,
    );
    assert.equal(tr.loras().length, 16 * 7);
    assert.ok(Number.isFinite(first) && Number.isFinite(last));
    tr.close();
  });

  test('test 9: K-quant bases train (Q4_K, Q4_K_M = Q4_K + Q6_K, Q5_K)', async () => {
    for (const type of ['q4_k', 'q4_k_m', 'q5_k'] as const) {
      const { first, last, tr } = await trainsOn({ type }, 4, 16);
      assert.ok(last < first, `${type}: loss ${first} -> ${last}`);
      if (type === 'q4_k_m')
        assert.ok(
          tr.info.weightTypes.includes('q6_K') && tr.info.weightTypes.includes('q4_K'),
          tr.info.weightTypes.join(),
        );
      tr.close();
    }
  });

  test('F16, BF16 (patch 0001) and Q8_0 bases train', async () => {
    for (const type of ['f16', 'bf16', 'q8_0'] as const) {
      const { first, last, tr } = await trainsOn({ type }, 3, 16);
      assert.ok(last < first, `${type}: loss ${first} -> ${last}`);
      tr.close();
    }
  });

  test('qwen2 (q/k/v biases) and qwen3 (q/k norms) architectures train', async () => {
    for (const arch of ['qwen2', 'qwen3'] as const) {
      const { first, last, tr } = await trainsOn(
        { type: 'f32', arch, vocab: 'qwen2', nHeadKv: 2 },
        3,
        16,
      );
      assert.equal(tr.info.arch, arch);
      assert.ok(last < first, `${arch}: loss ${first} -> ${last}`);
      tr.close();
    }
  });
});

describe('test 8: bad input fails before training with a clear error', () => {
  test('unsupported architectures name what is missing', async () => {
    const g = await tinyModel({ arch: 'gemma' });
    await rejects(Trainer.open(openOptions({ modelPath: g.path, seqLen: 16 })), 'E_ARCH', /GEGLU/);
    const d = await tinyModel({ arch: 'deepseek2' });
    await rejects(
      Trainer.open(openOptions({ modelPath: d.path, seqLen: 16 })),
      'E_ARCH',
      /MUL_MAT_ID|mixture-of-experts/,
    );
  });

  test('unknown target, bad rank, sequence longer than the context', async () => {
    const m = await tinyModel({ type: 'f32' });
    await rejects(
      Trainer.open(
        openOptions({ modelPath: m.path, seqLen: 16, targets: ['attn_qq' as 'attn_q'] }),
      ),
      'E_CONFIG',
      /unknown LoRA target 'attn_qq'/,
    );
    await rejects(
      Trainer.open(openOptions({ modelPath: m.path, seqLen: 16, rank: 0 })),
      'E_CONFIG',
      /rank/,
    );
    await rejects(
      Trainer.open(openOptions({ modelPath: m.path, seqLen: 16, rank: 1000 })),
      'E_CONFIG',
      /rank 1000 exceeds/,
    );
    await rejects(
      Trainer.open(openOptions({ modelPath: m.path, seqLen: m.nCtx + 1 })),
      'E_CONFIG',
      /longer than the model's training context/,
    );
  });

  test('missing, non-GGUF and truncated model files', async () => {
    const { dir, cleanup } = tempDir();
    try {
      await rejects(
        Trainer.open(openOptions({ modelPath: join(dir, 'nope.gguf'), seqLen: 16 })),
        'E_MODEL',
        /cannot open/,
      );
      writeFileSync(join(dir, 'x.gguf'), 'hello world');
      await rejects(
        Trainer.open(openOptions({ modelPath: join(dir, 'x.gguf'), seqLen: 16 })),
        'E_MODEL',
        /not a GGUF/,
      );
      writeFileSync(join(dir, 't.gguf'), Buffer.from('GGUF\x03\x00\x00\x00\x10\x00', 'latin1'));
      await rejects(
        Trainer.open(openOptions({ modelPath: join(dir, 't.gguf'), seqLen: 16 })),
        'E_MODEL',
        /GGUF header/,
      );
    } finally {
      cleanup();
    }
  });

  test('a missing required field is refused naming it (no defaults in the binding or the addon)', async () => {
    const m = await tinyModel({ type: 'f32' });
    const full = openOptions({ modelPath: m.path, seqLen: 16, rank: 4, threads: 2 });
    const without = <T extends object>(o: T, k: keyof T): T => {
      const c = { ...o };
      delete c[k];
      return c;
    };
    // The binding: every training value of open() is required.
    for (const k of [
      'targets',
      'rank',
      'alpha',
      'seed',
      'threads',
      'gpuLayers',
      'routeChunkMiB',
    ] as const) {
      await rejects(Trainer.open(without(full, k)), 'E_CONFIG', new RegExp(`^${k} `));
    }
    await rejects(Trainer.open(without(full, 'backwardRoute')), 'E_CONFIG', /backwardRoute/);
    // The addon itself: a field left out is a TypeError naming it, never a silent default.
    const raw = new (loadAddon('cpu').Trainer)();
    const rawOpen = { ...full, backwardRoute: 0 };
    for (const k of [
      'rank',
      'alpha',
      'seed',
      'seqLen',
      'threads',
      'gpuLayers',
      'backwardRoute',
      'routeChunkMiB',
    ]) {
      assert.throws(
        () => raw.open(without(rawOpen, k as keyof typeof rawOpen)),
        new RegExp(`^TypeError: ${k} is required`),
        k,
      );
    }
    assert.throws(() => raw.open(without(rawOpen, 'targets')), /^TypeError: targets is required/);
    await raw.open(rawOpen);
    try {
      const w = randomWindow(16, 1);
      const opt = adamw({ lr: 1e-3 });
      for (const k of Object.keys(opt) as (keyof typeof opt)[]) {
        assert.throws(
          () => raw.step([w], without(opt, k)),
          new RegExp(`^TypeError: ${k} is required`),
          k,
        );
      }
      const probe = { prompt: w.tokens.subarray(0, 4), maxTokens: 2, temperature: 0, seed: 0 };
      for (const k of ['maxTokens', 'temperature', 'seed'] as const) {
        assert.throws(
          () => raw.probe(without(probe, k)),
          new RegExp(`^TypeError: ${k} is required`),
          k,
        );
      }
    } finally {
      raw.close();
    }
  });

  test('bad windows: zero trained tokens, out-of-vocabulary ids, wrong length, corrupt state', async () => {
    const m = await tinyModel({ type: 'f32' });
    const tr = await Trainer.open(
      openOptions({ modelPath: m.path, seqLen: 16, rank: 4, threads: 2 }),
    );
    const w = randomWindow(16, 1);
    await rejects(
      tr.step(
        [{ tokens: w.tokens, labels: new Int32Array(16).fill(-1) }],
        adamw({ lr: 1e-3, clipNorm: 0 }),
      ),
      'E_NO_TOKENS',
      /no trained tokens/,
    );
    await rejects(
      tr.step(
        [{ tokens: w.tokens.map(() => 999999), labels: w.labels }],
        adamw({ lr: 1e-3, clipNorm: 0 }),
      ),
      'E_INPUT',
      /outside the vocabulary/,
    );
    await rejects(
      tr.step(
        [{ tokens: w.tokens, labels: w.labels.map(() => -5) }],
        adamw({ lr: 1e-3, clipNorm: 0 }),
      ),
      'E_INPUT',
      /neither -1/,
    );
    await rejects(
      tr.step(
        [{ tokens: w.tokens.subarray(0, 8), labels: w.labels.subarray(0, 8) }],
        adamw({ lr: 1e-3, clipNorm: 0 }),
      ),
      'E_INPUT',
      /expected 16/,
    );
    await rejects(tr.step([w], adamw({ lr: 1e-3, beta1: 1, clipNorm: 0 })), 'E_CONFIG', /AdamW/);
    assert.throws(
      () => tr.setState(Buffer.alloc(10), 1),
      (e: unknown) => e instanceof NativeError && e.code === 'E_CHECKPOINT',
    );
    // and it still trains afterwards
    const r = await tr.step([w], adamw({ lr: 1e-3, clipNorm: 0 }));
    assert.ok(Number.isFinite(r.loss));
    tr.close();
  });
});
