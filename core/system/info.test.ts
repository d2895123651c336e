import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { systemInfoSchema } from '../../contract/index.ts';
import { getSystemInfo, gpuDevices } from './info.ts';
import { disposeSharedLlama } from './llama.ts';

after(() => disposeSharedLlama());

describe('system.info', () => {
  it('reports this machine without downloading or building anything', async () => {
    const info = systemInfoSchema.parse(
      await getSystemInfo({ dataDir: '/data', appVersion: '1.2.3' }),
    );
    assert.ok(info.inferenceBackends.includes('cpu'));
    assert.ok(info.trainerBackends.includes('cpu'));
    assert.match(info.trainerBackend.reason, /^(CPU|CUDA|Vulkan|Metal): /);
    assert.ok(info.cpuCores > 0);
    assert.ok(info.ramTotal >= info.ramFree && info.ramFree > 0);
    assert.equal(info.dataDir, '/data');
    assert.equal(info.appVersion, '1.2.3');
    for (const g of info.gpus) assert.ok(g.vramTotal >= g.vramFree, JSON.stringify(g));
  });
});

describe('gpuDevices', () => {
  it('a GPU build that found no device (no names, no memory) reports no GPU', () => {
    assert.deepEqual(gpuDevices('vulkan', [], { total: 0, free: 0 }), []);
  });
  it('shares the summed memory between the named devices', () => {
    assert.deepEqual(gpuDevices('cuda', ['A', 'B'], { total: 8, free: 4 }), [
      { backend: 'cuda', name: 'A', vramTotal: 4, vramFree: 2 },
      { backend: 'cuda', name: 'B', vramTotal: 4, vramFree: 2 },
    ]);
  });
  it('a device without a name but with memory is still a GPU', () => {
    assert.deepEqual(gpuDevices('metal', [], { total: 16, free: 8 }), [
      { backend: 'metal', name: 'metal', vramTotal: 16, vramFree: 8 },
    ]);
  });
});
