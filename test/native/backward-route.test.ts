// Issue #10: the backend-neutral backward through frozen weights (native/src/trainer.cpp,
// ov_route_backward). The input gradient of mul_mat(W, x) is rebuilt from get_rows (dequantize
// W to F32) + a transposed copy + mul_mat, instead of OUT_PROD(W, dY^T), which GPU backends lack
// for quantized/F16/BF16 W. On the CPU both routes exist, so they are compared directly: the
// forward is identical and both backward routes multiply the same dequantized F32 values, so
// every LoRA gradient and the loss must agree to float rounding (5e-5 relative; a 0.1% change of the dequantized weights gives 2e-3), for every base
// type the GPU tests use and the ones the benchmark reports.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NativeError, Trainer, addonBuilt } from '../../native/ts/binding.ts';
import type { BackwardRoute } from '../../native/ts/binding.ts';
import type { TokenWindow } from '../../native/ts/token-data.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import type { TinyModelType } from '../fixtures/tiny-model.ts';
import { adamw, openOptions, randomWindow } from './helpers.ts';
import { ROUTE_CHUNK_MIB } from '../../contract/runs.ts';

const SEQ = 32;

async function gradients(
  type: TinyModelType,
  route: BackwardRoute,
  w: TokenWindow,
  routeChunkMiB = ROUTE_CHUNK_MIB,
) {
  const m = await tinyModel({ type });
  const tr = await Trainer.open(
    openOptions({
      modelPath: m.path,
      seqLen: SEQ,
      rank: 4,
      alpha: 8,
      seed: 5,
      threads: 2,
      backwardRoute: route,
      routeChunkMiB,
    }),
  );
  try {
    let s = 7;
    for (const l of tr.loras()) {
      const b = tr.getTensor(l.name, 'b');
      for (let i = 0; i < b.length; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        b[i] = (s / 4294967296 - 0.5) * 0.2;
      }
      tr.setTensor(l.name, 'b', b);
    }
    const r = await tr.grad(w);
    const parts = tr
      .loras()
      .flatMap((l) => [tr.getTensor(l.name, 'grad_a'), tr.getTensor(l.name, 'grad_b')]);
    const g = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      g.set(p, o);
      o += p.length;
    }
    const compute = tr.memory().reduce((n, e) => n + e.compute, 0);
    return {
      loss: r.loss,
      g,
      routed: tr.placement().nRouted,
      types: tr.info.weightTypes,
      compute,
    };
  } finally {
    tr.close();
  }
}

function rel(a: Float64Array, b: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('backward through frozen weights: dequantize + mul_mat route = OUT_PROD', () => {
  const w = randomWindow(SEQ, 17, { maskFirst: 4 });
  for (const type of ['q4_0', 'q4_k', 'q8_0', 'f16', 'bf16'] as const) {
    test(`${type}: every LoRA gradient and the loss agree within 5e-5`, async () => {
      const ref = await gradients(type, 'outprod', w);
      const routed = await gradients(type, 'dequant', w);
      assert.equal(ref.routed, 0, 'the OUT_PROD route rewrote nodes');
      // 2 layers x 7 linears + the output projection, plus attention's two products per layer
      assert.ok(routed.routed >= 15, `only ${routed.routed} input gradients were routed`);
      const d = rel(routed.g, ref.g);
      console.log(
        `${type}: ${routed.routed} products routed, gradient difference ${d.toExponential(2)}`,
      );
      assert.ok(d < 5e-5, `${type} (${ref.types.join(',')}): gradients differ by ${d}`);
      assert.ok(Math.abs(routed.loss - ref.loss) <= 1e-6 * Math.abs(ref.loss));
    });
  }

  // patch 0004: the route's transient copies leave one planner hole per layer between the
  // activations kept for backward; with ggml-alloc's 256 free blocks a 48-layer model aborted
  test('a 64-layer model plans and trains through the route (ggml-alloc free blocks, patch 0004)', async () => {
    const m = await tinyModel({ type: 'q4_0', nLayer: 64 });
    const tr = await Trainer.open(
      openOptions({
        modelPath: m.path,
        seqLen: 16,
        rank: 2,
        threads: 2,
        backwardRoute: 'dequant',
      }),
    );
    try {
      const r = await tr.step([randomWindow(16, 3)], adamw({ lr: 1e-3, clipNorm: 0 }));
      assert.ok(Number.isFinite(r.loss) && r.loss > 0);
      assert.ok(tr.placement().nRouted >= 64 * 7);
    } finally {
      tr.close();
    }
  });

  // The route splits a weight into row blocks whose transient F32 copies stay within
  // routeChunkMiB: the tiny model's output projection (32000 x 64, 16 MiB of copies whole) in
  // 1 MiB blocks is 16 products summed. Same gradients; the compute buffer loses the copies.
  test('the route in row blocks (routeChunkMiB 1) = OUT_PROD, with a smaller compute buffer', async () => {
    const ref = await gradients('q4_0', 'outprod', w);
    const whole = await gradients('q4_0', 'dequant', w, 0);
    const blocks = await gradients('q4_0', 'dequant', w, 1);
    const d = rel(blocks.g, ref.g);
    assert.ok(d < 5e-5, `gradients differ by ${d}`);
    assert.ok(Math.abs(blocks.loss - ref.loss) <= 1e-6 * Math.abs(ref.loss));
    assert.equal(blocks.routed, whole.routed);
    const saved = whole.compute - blocks.compute;
    console.log(
      `route compute buffer: whole ${(whole.compute / 2 ** 20).toFixed(1)} MiB, 1 MiB blocks ${(blocks.compute / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.ok(saved >= 8 * 2 ** 20, `the blocks saved only ${saved} bytes of the 16 MiB copies`);
  });

  test('auto keeps OUT_PROD on the CPU backend (patch 0002 is faster there)', async () => {
    const auto = await gradients('q4_0', 'auto', w);
    assert.equal(auto.routed, 0);
  });
});

describe('backend and route options', () => {
  test('a bad backwardRoute or backend is E_CONFIG; a GPU addon that is not built is E_NO_ADDON with its command', async () => {
    const m = await tinyModel({ type: 'f32' });
    const bad = (e: unknown, code: string, re: RegExp) =>
      e instanceof NativeError && e.code === code && re.test(e.message);
    await assert.rejects(
      Trainer.open(openOptions({ modelPath: m.path, seqLen: 16, backwardRoute: 'fast' as 'auto' })),
      (e) => bad(e, 'E_CONFIG', /backwardRoute must be one of auto, dequant, outprod/),
    );
    await assert.rejects(
      Trainer.open(openOptions({ modelPath: m.path, seqLen: 16, backend: 'opencl' as 'cpu' })),
      (e) => bad(e, 'E_CONFIG', /backend must be one of cpu, vulkan, cuda, metal/),
    );
    if (!addonBuilt('metal')) {
      await assert.rejects(
        Trainer.open(openOptions({ modelPath: m.path, seqLen: 16, backend: 'metal' })),
        (e) => bad(e, 'E_NO_ADDON', /npm run build:native:metal/),
      );
    }
  });
});
