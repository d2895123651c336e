#!/usr/bin/env node
// npm run check:cuda: on an NVIDIA machine, build the CUDA addon (npm run build:native:cuda)
// and run the GPU tests (test/native/gpu-vulkan.test.ts, OVERNIGHT_GPU_TEST_BACKEND=cuda) on it.
// Fails with a clear message when nvcc or an NVIDIA device is missing.
import { spawnSync } from 'node:child_process';

function fail(msg) {
  console.error(`check:cuda FAILED: ${msg}`);
  process.exit(1);
}
const has = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' });

const nvcc = has('nvcc', ['--version']);
if (nvcc.error || nvcc.status !== 0) {
  fail('nvcc not found: install the CUDA toolkit (e.g. nvidia-cuda-toolkit) and put nvcc on PATH');
}
const smi = has('nvidia-smi', ['-L']);
if (smi.error || smi.status !== 0 || !/GPU \d+:/.test(smi.stdout)) {
  fail('no NVIDIA device found (nvidia-smi -L lists none or is missing)');
}
console.log(`check:cuda: ${nvcc.stdout.trim().split('\n').pop()}\n${smi.stdout.trim()}`);

const t0 = Date.now();
const build = spawnSync('npm', ['run', 'build:native:cuda'], { stdio: 'inherit' });
if (build.status !== 0) fail(`npm run build:native:cuda exited with ${build.status}`);
const buildS = ((Date.now() - t0) / 1000).toFixed(0);

const t1 = Date.now();
const test = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=spec',
    '--test-concurrency=1',
    'test/native/gpu-vulkan.test.ts',
  ],
  {
    encoding: 'utf8',
    env: { ...process.env, OVERNIGHT_GPU_TEST_BACKEND: 'cuda', OVERNIGHT_TRAINER_BACKEND: 'cuda' },
  },
);
process.stdout.write(test.stdout ?? '');
process.stderr.write(test.stderr ?? '');
const out = `${test.stdout ?? ''}`;
const num = (k) => Number(out.match(new RegExp(`^# ${k} (\\d+)`, 'm'))?.[1] ?? NaN);
console.log(
  `\ncheck:cuda summary: build ${buildS} s; GPU tests on CUDA: ${num('pass')} passed, ${num('fail')} failed, ${num('skipped')} skipped (${((Date.now() - t1) / 1000).toFixed(0)} s)`,
);
if (test.status !== 0) fail('GPU tests failed on CUDA');
if (num('skipped') > 0 || /gpu-vulkan tests skipped/.test(out))
  fail('GPU tests were skipped (see the reason above)');
console.log('check:cuda OK');
