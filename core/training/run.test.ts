import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ROUTE_CHUNK_MIB } from '../../contract/runs.ts';
import { parseTrainingJob } from '../../contract/training.ts';
import { trainerOpenOptions } from './run.ts';

test('the trainer opens with every value of the job, explicitly', () => {
  const job = parseTrainingJob({
    modelPath: '/m.gguf',
    dataPath: '/t.tokens',
    adapterPath: '/a.gguf',
    lora: { rank: 8, alpha: 4, targets: ['attn_q', 'ffn_down'], seed: 5 },
    optimizer: { lr: 1e-3 },
    schedule: { type: 'constant' },
    windowsPerStep: 4,
    microBatch: 2,
    checkpointing: true,
    lossChunk: 48,
    maxSteps: 1,
    seed: 9,
    threads: 3,
    backend: 'vulkan',
    gpuLayers: 7,
  });
  assert.deepEqual(trainerOpenOptions(job, 256), {
    modelPath: '/m.gguf',
    targets: ['attn_q', 'ffn_down'],
    rank: 8,
    alpha: 4,
    seed: 5,
    seqLen: 256,
    threads: 3,
    gpuLayers: 7,
    backend: 'vulkan',
    backwardRoute: 'auto',
    routeChunkMiB: ROUTE_CHUNK_MIB,
    checkpointing: true,
    lossChunk: 48,
    microBatch: 2,
  });
  // Without a LoRA seed the job's seed initialises the adapter.
  const { seed: _s, ...lora } = job.lora;
  assert.equal(trainerOpenOptions({ ...job, lora }, 256).seed, 9);
});
