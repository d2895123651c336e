import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { systemInfoSchema } from '../../contract/index.ts';
import { getSystemInfo } from './info.ts';
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
