import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { chooseTrainerBackend, trainerBackends } from './trainer-backends.ts';

describe('trainerBackends', () => {
  it('is cpu without a build, reads the CMake cache, prefers build-info.json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
    try {
      assert.deepEqual(trainerBackends(dir, null), ['cpu']);
      writeFileSync(join(dir, 'CMakeCache.txt'), 'GGML_CUDA:BOOL=ON\nGGML_VULKAN:BOOL=OFF\n');
      assert.deepEqual(trainerBackends(dir, null), ['cpu', 'cuda']);
      writeFileSync(join(dir, 'build-info.json'), JSON.stringify({ backends: ['vulkan'] }));
      assert.deepEqual(trainerBackends(dir, null), ['cpu', 'vulkan']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('trainerBackends with GPU addons beside the CPU one', () => {
  it('adds a backend whose native/build-<backend> addon exists', () => {
    const root = mkdtempSync(join(tmpdir(), 'overnight-'));
    try {
      assert.deepEqual(trainerBackends(join(root, 'build'), root), ['cpu']);
      mkdirSync(join(root, 'build-vulkan', 'Release'), { recursive: true });
      writeFileSync(join(root, 'build-vulkan', 'Release', 'overnight_native.node'), '');
      assert.deepEqual(trainerBackends(join(root, 'build'), root), ['cpu', 'vulkan']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('chooseTrainerBackend (addons built x devices present)', () => {
  const nvidia = { backend: 'cuda', name: 'RTX 4090' };
  const radeon = { backend: 'vulkan', name: 'Radeon 780M' };
  it('auto: the CPU without a GPU addon, saying how to build one', () => {
    const c = chooseTrainerBackend('auto', ['cpu'], [nvidia]);
    assert.equal(c.backend, 'cpu');
    assert.equal(c.reason, 'CPU: no GPU addon built (npm run build:native:vulkan)');
  });
  it('auto: the CPU when an addon is built but no device is present', () => {
    const c = chooseTrainerBackend('auto', ['cpu', 'vulkan'], []);
    assert.deepEqual(c, {
      backend: 'cpu',
      reason: 'CPU: Vulkan addon built but no Vulkan device found',
    });
    assert.equal(chooseTrainerBackend('auto', ['cpu', 'cuda'], [radeon]).backend, 'cpu');
  });
  it('auto: the GPU when its addon is built and a device is present', () => {
    assert.deepEqual(chooseTrainerBackend('auto', ['cpu', 'vulkan'], [radeon]), {
      backend: 'vulkan',
      reason: "Vulkan: addon built, device 'Radeon 780M' present",
    });
    // Vulkan drives any GPU; CUDA only an NVIDIA (cuda) device, and is preferred there.
    assert.equal(chooseTrainerBackend('auto', ['cpu', 'vulkan'], [nvidia]).backend, 'vulkan');
    assert.equal(chooseTrainerBackend('auto', ['cpu', 'vulkan', 'cuda'], [nvidia]).backend, 'cuda');
    assert.equal(
      chooseTrainerBackend('auto', ['cpu', 'cuda', 'vulkan'], [radeon]).backend,
      'vulkan',
    );
  });
  it('an explicit backend: cpu always; a GPU one only when built', () => {
    assert.equal(chooseTrainerBackend('cpu', ['cpu', 'vulkan'], [radeon]).backend, 'cpu');
    const c = chooseTrainerBackend('cuda', ['cpu', 'vulkan'], [nvidia]);
    assert.equal(c.backend, 'cpu');
    assert.match(
      c.reason,
      /asks for CUDA but its addon is not built \(npm run build:native:cuda\)/,
    );
    assert.equal(chooseTrainerBackend('vulkan', ['cpu', 'vulkan'], [radeon]).backend, 'vulkan');
  });
});
