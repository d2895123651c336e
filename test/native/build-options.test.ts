/**
 * native/scripts/build.mjs turns its environment into CMake configure arguments; `--dry-run`
 * prints them (nothing is extracted, configured or built), so these run in well under a second.
 *   - OVERNIGHT_CUDA_ARCHS reaches CMake as CMAKE_CUDA_ARCHITECTURES for the CUDA backend only
 *     (needed to compile the CUDA addon on a machine without an NVIDIA GPU, where ggml's default
 *     "native" finds none); unset drops a cached value so ggml's default applies again.
 *   - a malformed value fails with a message naming the variable, before anything is built.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, test } from 'node:test';

const root = resolve(import.meta.dirname, '..', '..');
const script = resolve(root, 'native', 'scripts', 'build.mjs');

interface DryRun {
  backend: string;
  buildDir: string;
  configureArgs: string[];
}

function dryRun(
  backend: string,
  archs: string | undefined,
): { status: number | null; out: DryRun | null; stderr: string } {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OVERNIGHT_SKIP_NATIVE;
  delete env.OVERNIGHT_CUDA_ARCHS;
  if (archs !== undefined) env.OVERNIGHT_CUDA_ARCHS = archs;
  const r = spawnSync(process.execPath, [script, '--backend', backend, '--dry-run'], {
    encoding: 'utf8',
    env,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return {
    status: r.status,
    out: r.status === 0 ? (JSON.parse(line) as DryRun) : null,
    stderr: r.stderr,
  };
}

const archArgs = (d: DryRun | null): string[] =>
  (d?.configureArgs ?? []).filter((a) => a.includes('CMAKE_CUDA_ARCHITECTURES'));

describe('native build options (build.mjs --dry-run)', () => {
  test('OVERNIGHT_CUDA_ARCHS is forwarded as CMAKE_CUDA_ARCHITECTURES for cuda', () => {
    const one = dryRun('cuda', '89');
    assert.equal(one.status, 0, one.stderr);
    assert.equal(one.out?.backend, 'cuda');
    assert.ok(one.out?.configureArgs.includes('-DGGML_CUDA=ON'));
    assert.deepEqual(archArgs(one.out), ['-DCMAKE_CUDA_ARCHITECTURES=89']);
    // a comma list becomes CMake's semicolon list
    assert.deepEqual(archArgs(dryRun('cuda', '86,89-real').out), [
      '-DCMAKE_CUDA_ARCHITECTURES=86;89-real',
    ]);
  });

  test('unset or empty: the cached value is dropped (ggml default)', () => {
    assert.deepEqual(archArgs(dryRun('cuda', undefined).out), ['-UCMAKE_CUDA_ARCHITECTURES']);
    assert.deepEqual(archArgs(dryRun('cuda', '  ').out), ['-UCMAKE_CUDA_ARCHITECTURES']);
  });

  test('other backends never get CUDA architectures', () => {
    for (const backend of ['cpu', 'vulkan']) {
      const d = dryRun(backend, '89');
      assert.equal(d.status, 0, d.stderr);
      assert.equal(d.out?.backend, backend);
      assert.deepEqual(archArgs(d.out), [], backend);
    }
  });

  test('a malformed value fails naming the variable', () => {
    const d = dryRun('cuda', '89 sm_90!');
    assert.equal(d.status, 1);
    assert.match(d.stderr, /OVERNIGHT_CUDA_ARCHS=89 sm_90!: expected CUDA architectures/);
  });
});
