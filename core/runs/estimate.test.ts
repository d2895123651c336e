import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runConfigSchema } from '../../contract/index.ts';
import {
  estimateBytes,
  loraParameterCount,
  memoryEstimate,
  memoryParts,
  plannedSteps,
  stepsForDeadline,
  type ModelDims,
} from './estimate.ts';

// A Llama-3.2-1B-like shape: 16 layers, E 2048, F 8192, 32 heads / 8 KV heads, V 128256, Q4_K_M ~ 0.8 GB.
const llama1b: ModelDims = {
  layers: 16,
  embd: 2048,
  ffn: 8192,
  heads: 32,
  kvHeads: 8,
  vocab: 128256,
  weightBytes: 807_694_464,
};
const cfg = (over: object = {}) => runConfigSchema.parse({ model: 'm', dataset: 'd', ...over });

test('LoRA parameters follow rank x (d_in + d_out) per target and layer, with GQA widths for K and V', () => {
  // q: 8*(2048+2048) = 32768; v: 8*(2048+512) = 20480; per layer 53248; x16 = 851968
  assert.equal(
    loraParameterCount({ loraRank: 8, loraTargets: ['attn_q', 'attn_v'] }, llama1b),
    851_968,
  );
});

test('the memory parts are the documented arithmetic', () => {
  const c = cfg({
    loraRank: 8,
    loraTargets: ['attn_q', 'attn_v'],
    sequenceLength: 512,
    effectiveBatch: 4,
  });
  const p = memoryParts(c, llama1b);
  const T = 512;
  assert.equal(p.lora, 16 * 851_968);
  assert.equal(p.activations, 16 * ((9 * 2048 + 3 * 8192) * T * 4 + 32 * T * T * 4));
  assert.equal(p.logits, 5 * 128256 * T * 4); // ~1.3 GB: the vocab dominates at this size
  assert.equal(p.kv, 2 * 16 * T * 512 * 4);
  const rest = p.weights! + p.lora! + p.activations! + p.logits! + p.kv!;
  assert.equal(p.overhead, 64 * 1024 * 1024 + 0.05 * rest);
});

test('a longer sequence costs more memory; the effective batch none (one window per micro-batch); rank little', () => {
  const base = cfg({ sequenceLength: 512, effectiveBatch: 8 });
  assert.equal(
    estimateBytes({ ...base, effectiveBatch: 64 }, llama1b),
    estimateBytes(base, llama1b),
  );
  assert.ok(
    estimateBytes({ ...base, sequenceLength: 1024 }, llama1b) > estimateBytes(base, llama1b) * 1.5,
  );
  assert.ok(estimateBytes({ ...base, loraRank: 64 }, llama1b) < estimateBytes(base, llama1b) * 1.1);
});

test('a micro-batch of N windows holds N windows of activations, logits and KV', () => {
  const one = memoryParts(cfg({ sequenceLength: 512, effectiveBatch: 8 }), llama1b);
  const four = memoryParts(cfg({ sequenceLength: 512, effectiveBatch: 8, microBatch: 4 }), llama1b);
  assert.equal(four.activations, 4 * one.activations!);
  assert.equal(four.logits, 4 * one.logits!);
  assert.equal(four.kv, 4 * one.kv!);
  assert.equal(four.lora, one.lora);
});

test('the verdict compares with free memory and says what to change', () => {
  const c = cfg({ sequenceLength: 2048, effectiveBatch: 8 });
  const need = estimateBytes(c, llama1b);
  assert.equal(memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need * 2 }).verdict, 'fits');
  assert.equal(memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need / 0.9 }).verdict, 'tight');
  const no = memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need / 3 });
  assert.equal(no.verdict, 'will-not-fit');
  assert.doesNotMatch(no.advice.join('\n'), /accumulation|micro-batch/);
  assert.match(no.advice.join('\n'), /sequence length to \d+ tokens/);
  assert.deepEqual(memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need * 2 }).advice, []);
});

test('steps come from maxSteps, else epochs over the training windows', () => {
  assert.deepEqual(plannedSteps({ epochs: 2, maxSteps: null, effectiveBatch: 8 }, 100), {
    stepsPerEpoch: 13,
    totalSteps: 26,
  });
  assert.deepEqual(plannedSteps({ epochs: 2, maxSteps: 5, effectiveBatch: 8 }, 100), {
    stepsPerEpoch: 13,
    totalSteps: 5,
  });
  assert.deepEqual(plannedSteps({ epochs: 0.5, maxSteps: null, effectiveBatch: 1 }, 3), {
    stepsPerEpoch: 3,
    totalSteps: 2,
  });
});

test('a finish-by time picks the steps that fit before the next such time', () => {
  const now = new Date(2026, 0, 1, 23, 0, 0);
  const r = stepsForDeadline('07:00', now, 2);
  assert.equal(r.deadline.getDate(), 2);
  assert.equal(r.steps, Math.floor((8 * 3600 * 0.95) / 2));
  assert.equal(stepsForDeadline('23:30', now, 1).steps, Math.floor(1800 * 0.95));
});
