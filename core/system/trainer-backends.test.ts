import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { trainerBackends } from './trainer-backends.ts';

describe('trainerBackends', () => {
  it('is cpu without a build, reads the CMake cache, prefers build-info.json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
    try {
      assert.deepEqual(trainerBackends(dir), ['cpu']);
      writeFileSync(join(dir, 'CMakeCache.txt'), 'GGML_CUDA:BOOL=ON\nGGML_VULKAN:BOOL=OFF\n');
      assert.deepEqual(trainerBackends(dir), ['cpu', 'cuda']);
      writeFileSync(join(dir, 'build-info.json'), JSON.stringify({ backends: ['vulkan'] }));
      assert.deepEqual(trainerBackends(dir), ['cpu', 'vulkan']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
