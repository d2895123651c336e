// Chat's memory budget: the estimate grows with the columns and the context, and the verdict
// keeps room for what a training run may still grow by; without room it says so and
// recommends the CPU.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chatMemoryBytes, chatMemoryVerdict } from '../../core/compare/memory.ts';
import type { ModelDims } from '../../core/runs/estimate.ts';

// Roughly a 1B Llama at Q4: 16 layers, 2048 wide, 8 KV heads of 32.
const dims: ModelDims = {
  layers: 16,
  embd: 2048,
  ffn: 8192,
  heads: 32,
  kvHeads: 8,
  vocab: 128256,
  weightBytes: 800e6,
};
const GB = 1e9;

describe('chat memory', () => {
  test('weights once, one KV cache and compute buffer per column', () => {
    const one = chatMemoryBytes(dims, 1, 4096);
    const three = chatMemoryBytes(dims, 3, 4096);
    // KV per column: 2 x 16 layers x 4096 x 512 wide x 2 bytes = 128 MiB
    const kv = 2 * 16 * 4096 * 512 * 2;
    const compute = 128256 * 512 * 4 + 4 * 512 * (2048 + 8192) * 4;
    assert.ok(Math.abs(three - one - 2 * (kv + compute) * 1.05) <= 1, String(three - one));
    assert.ok(one > dims.weightBytes && one < 2 * dims.weightBytes, String(one));
  });

  test('fits on an idle GPU with room', () => {
    const v = chatMemoryVerdict({
      needBytes: 1.2 * GB,
      gpu: { name: 'RTX', freeBytes: 8 * GB },
      training: null,
    });
    assert.equal(v.fitsGpu, true);
    assert.equal(v.recommended, 'gpu');
  });

  test('while a run trains, the room it may still grow into is kept: then the CPU is offered', () => {
    const v = chatMemoryVerdict({
      needBytes: 1.2 * GB,
      gpu: { name: 'RTX', freeBytes: 3 * GB },
      training: { name: 'night run', growthBytes: 2.5 * GB },
    });
    assert.equal(v.fitsGpu, false);
    assert.equal(v.recommended, 'cpu');
    assert.equal(v.trainingRun, 'night run');
    assert.match(v.message, /only 0\.50 GB to spare while run "night run" trains/);
    assert.match(v.message, /CPU instead/);
    // Without the growth it would have fit.
    const idle = chatMemoryVerdict({
      needBytes: 1.2 * GB,
      gpu: { name: 'RTX', freeBytes: 3 * GB },
      training: null,
    });
    assert.equal(idle.fitsGpu, true);
  });

  test('no GPU: the CPU, said plainly', () => {
    const v = chatMemoryVerdict({ needBytes: 1.2 * GB, gpu: null, training: null });
    assert.equal(v.recommended, 'cpu');
    assert.equal(v.gpu, null);
    assert.match(v.message, /no GPU/);
  });
});
