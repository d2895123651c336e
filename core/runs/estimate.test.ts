import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runConfigSchema } from '../../contract/index.ts';
import {
  estimateBytes,
  graphBytes,
  LLAMA3_8B_Q4_K_M,
  lossChunkRows,
  loraParameterCount,
  memoryEstimate,
  memoryParts,
  plannedSteps,
  resolveCheckpointing,
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
const MiB = 1024 * 1024;
const cfg = (over: object = {}) => runConfigSchema.parse({ model: 'm', dataset: 'd', ...over });

test('LoRA parameters follow rank x (d_in + d_out) per target and layer, with GQA widths for K and V', () => {
  // q: 8*(2048+2048) = 32768; v: 8*(2048+512) = 20480; per layer 53248; x16 = 851968
  assert.equal(
    loraParameterCount({ loraRank: 8, loraTargets: ['attn_q', 'attn_v'] }, llama1b),
    851_968,
  );
});

// The issue #11 target: a Llama-3-8B-shaped Q4_K_M model.
const llama3_8b = LLAMA3_8B_Q4_K_M;
const allTargets = [
  'attn_q',
  'attn_k',
  'attn_v',
  'attn_output',
  'ffn_gate',
  'ffn_up',
  'ffn_down',
] as const;

test('the memory parts are the documented arithmetic (docs/native.md "Memory per component")', () => {
  const c = cfg({
    loraRank: 8,
    loraTargets: ['attn_q', 'attn_v'],
    sequenceLength: 512,
    effectiveBatch: 4,
  });
  const T = 512;
  const { layers: L, embd: E, ffn: F, heads: H, vocab: V } = llama1b;
  const S = 4 * T * T * H;
  const A = 4 * T * (E + F);
  const mono = memoryParts(c, llama1b);
  assert.equal(mono.weights, llama1b.weightBytes);
  assert.equal(mono.lora, 16 * 851_968 + 32 + 4 * V);
  assert.equal(mono.checkpoints, 0);
  assert.equal(mono.compute, 12 * V * T + L * (S + 4.4 * A));
  assert.equal(mono.staging, 4 * V * T + 4 * T * T);
  assert.ok(mono.overhead! > 100 * MiB && mono.overhead! < 200 * MiB);

  const ck = memoryParts(c, llama1b, { checkpointing: true, lossChunk: 128 });
  assert.equal(ck.checkpoints, (L + 3) * 4 * E * T);
  const layer = Math.max(S + 5.2 * A, 2 * S + 4.6 * A);
  const head = 12 * V * 128 + 4 * E * T;
  assert.equal(ck.compute, Math.max(S + 1.7 * A, head, layer));
  assert.equal(ck.staging, 4 * V * 128 + 4 * T * T);
  assert.equal(ck.lora, mono.lora);
  // lossChunk 0 = one chunk of all rows (the trainer's reading).
  assert.equal(
    memoryParts(c, llama1b, { checkpointing: true, lossChunk: 0 }).staging,
    4 * V * T + 4 * T * T,
  );
});

test('a longer sequence costs more memory; the effective batch none; rank little', () => {
  const base = cfg({ sequenceLength: 512, effectiveBatch: 8 });
  for (const checkpointing of [false, true]) {
    const l = { checkpointing };
    assert.equal(
      estimateBytes({ ...base, effectiveBatch: 64 }, llama1b, l),
      estimateBytes(base, llama1b, l),
    );
    assert.ok(
      estimateBytes({ ...base, sequenceLength: 1024 }, llama1b, l) >
        estimateBytes(base, llama1b, l) * 1.1,
    );
    assert.ok(
      estimateBytes({ ...base, loraRank: 64 }, llama1b, l) < estimateBytes(base, llama1b, l) * 1.2,
    );
  }
});

test('a micro-batch of N windows holds N windows of checkpoints, activations and mask', () => {
  const one = cfg({ sequenceLength: 512, effectiveBatch: 8 });
  const four = cfg({ sequenceLength: 512, effectiveBatch: 8, microBatch: 4 });
  const ck = { checkpointing: true, lossChunk: 128 };
  assert.equal(
    memoryParts(four, llama1b, ck).checkpoints,
    4 * memoryParts(one, llama1b, ck).checkpoints!,
  );
  assert.equal(memoryParts(four, llama1b).compute, 4 * memoryParts(one, llama1b).compute!);
  assert.equal(memoryParts(four, llama1b).lora, memoryParts(one, llama1b).lora);
});

test('the loss chunk keeps the head graph within the per-layer backward graph, 16..T rows', () => {
  for (const [d, T] of [
    [llama1b, 512],
    [llama3_8b, 1024],
    [llama3_8b, 4096],
  ] as const) {
    const C = lossChunkRows(d, T);
    const g = graphBytes({ sequenceLength: T, microBatch: 1 }, d);
    assert.ok(C >= 16 && C <= T, `${C} rows`);
    assert.ok(12 * d.vocab * C + 4 * d.embd * T <= g.layerBackward, `${C} rows at T ${T}`);
    assert.ok(12 * d.vocab * (C + 1) + 4 * d.embd * T > g.layerBackward || C === T);
  }
  // A tiny model: the layer graph is smaller than 16 vocabulary rows; the floor holds.
  const tiny = { ...llama1b, layers: 2, embd: 64, ffn: 128, heads: 4, kvHeads: 4 };
  assert.equal(lossChunkRows(tiny, 64), 16);
});

test('checkpointing auto: on only when the monolithic estimate does not fit', () => {
  const c = cfg({ sequenceLength: 1024 });
  const mono = estimateBytes(c, llama1b);
  assert.equal(resolveCheckpointing('auto', c, llama1b, mono * 2), false);
  assert.equal(resolveCheckpointing('auto', c, llama1b, mono), true);
  assert.equal(resolveCheckpointing('off', c, llama1b, 1), false);
  assert.equal(resolveCheckpointing('on', c, llama1b, 1e15), true);
});

test('issue #11 target: Llama-3-8B Q4_K_M, sequence 1024, rank 16 x 7 targets, checkpointing: <= 8 GB (8e9 bytes)', () => {
  const c = cfg({
    loraRank: 16,
    loraTargets: [...allTargets],
    sequenceLength: 1024,
    effectiveBatch: 8,
    microBatch: 1,
    checkpointing: 'on',
  });
  // On a GPU backend (the target's setting): the backward route's transient copies count too.
  const est = memoryEstimate(c, llama3_8b, { name: 'GPU', freeBytes: 8e9, backend: 'cuda' });
  assert.equal(est.checkpointing, true);
  assert.ok(est.totalBytes <= 8e9, `${(est.totalBytes / 1e9).toFixed(2)} GB`);
  assert.equal(est.totalBytes, estimateBytes(c, llama3_8b, { checkpointing: true, gpu: true }));
  // the route in row blocks: 64 MiB of copies + the block sums (8·F·T), not the whole 128k x
  // 4096 output projection in F32 (8·V·E = 4.2 GB) that an unsplit route would add
  assert.equal(est.parts.route, 64 * 2 ** 20 + 8 * 14336 * 1024);
  assert.equal(memoryParts(c, llama3_8b, { checkpointing: true }).route, 0);
  // Without checkpointing the same run needs several times that (the issue's ~26 GB).
  assert.ok(estimateBytes(c, llama3_8b) > 20e9);
});

test('the verdict compares with free memory and says what to change', () => {
  const c = cfg({ sequenceLength: 2048, effectiveBatch: 8, checkpointing: 'off' });
  const need = estimateBytes(c, llama1b);
  assert.equal(memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need * 2 }).verdict, 'fits');
  assert.equal(memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need / 0.9 }).verdict, 'tight');
  const no = memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need / 3 });
  assert.equal(no.verdict, 'will-not-fit');
  assert.equal(no.checkpointing, false);
  assert.doesNotMatch(no.advice.join('\n'), /accumulation|micro-batch/);
  assert.match(no.advice.join('\n'), /checkpointing on/);
  assert.match(no.advice.join('\n'), /sequence length to \d+ tokens/);
  assert.deepEqual(memoryEstimate(c, llama1b, { name: 'GPU', freeBytes: need * 2 }).advice, []);
  // 'auto' where the monolithic layout does not fit: the estimate assumes checkpointing.
  const auto = memoryEstimate({ ...c, checkpointing: 'auto' }, llama1b, {
    name: 'GPU',
    freeBytes: need / 3,
  });
  assert.equal(auto.checkpointing, true);
  assert.equal(auto.totalBytes, estimateBytes(c, llama1b, { checkpointing: true }));
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
