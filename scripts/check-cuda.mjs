#!/usr/bin/env node
// npm run check:cuda: on an NVIDIA machine, build the CPU addon (the GPU tests compare against
// it; skipped when up to date) and the CUDA addon, then run the GPU tests
// (test/native/gpu-vulkan.test.ts, OVERNIGHT_GPU_TEST_BACKEND=cuda) on CUDA.
// `npm run check:cuda -- --build-only`: only the CUDA addon, no device needed (a compile check on
// a machine without an NVIDIA GPU; then OVERNIGHT_CUDA_ARCHS must name the architectures, since
// ggml's default "native" finds none).
// Before any compile it fails with a clear message when nvcc (PATH, else CUDACXX, else
// /usr/local/cuda/bin/nvcc), cuBLAS (header and library: ggml-cuda links it) or, unless
// --build-only, an NVIDIA device is missing. OVERNIGHT_CUDA_ARCHS, OVERNIGHT_NATIVE_JOBS,
// CUDAFLAGS, CMAKE_LIBRARY_PATH etc. pass through to native/scripts/build.mjs and CMake.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testCounts } from './test-summary.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const buildScript = join(root, 'native', 'scripts', 'build.mjs');
const buildOnly = process.argv.includes('--build-only');

function fail(msg) {
  console.error(`check:cuda FAILED: ${msg}`);
  process.exit(1);
}
const has = (cmd, args, env = process.env) => spawnSync(cmd, args, { encoding: 'utf8', env });
const env = { ...process.env };

// nvcc: on PATH, else CUDACXX, else the usual toolkit link; an off-PATH one is put on PATH (and
// in CUDACXX) for CMake.
let nvcc = null;
for (const cmd of ['nvcc', process.env.CUDACXX, '/usr/local/cuda/bin/nvcc']) {
  if (!cmd) continue;
  const r = has(cmd, ['--version']);
  if (!r.error && r.status === 0) {
    nvcc = { cmd, version: r.stdout };
    break;
  }
}
if (!nvcc) {
  fail(
    'nvcc not found (PATH, CUDACXX, /usr/local/cuda/bin): install the CUDA toolkit (Debian 12: nvidia-cuda-toolkit in non-free) and put nvcc on PATH',
  );
}
if (nvcc.cmd !== 'nvcc') {
  env.PATH = `${dirname(nvcc.cmd)}${delimiter}${env.PATH ?? ''}`;
  env.CUDACXX ??= nvcc.cmd;
}
const release = nvcc.version.match(/release ([\d.]+), V([\d.]+)/);
const toolkitVersion = release ? `${release[2]} (release ${release[1]})` : 'unknown version';

// Where this nvcc looks for headers and libraries (its own dry run prints them), plus the places
// a distribution or the environment adds.
const dry = has(nvcc.cmd, ['--dryrun', '-x', 'cu', '-c', '/dev/null', '-o', '/dev/null'], env);
const dryOut = `${dry.stdout ?? ''}${dry.stderr ?? ''}`;
const top = dryOut.match(/^#\$ TOP=(.*)$/m)?.[1]?.trim();
const flagDirs = (text, flag) =>
  [...text.matchAll(new RegExp(`"?${flag}"?\\s*"?([^"\\s]+)`, 'g'))].map((m) => m[1]);
const envDirs = (name) => (process.env[name] ?? '').split(delimiter).filter(Boolean);
const includeDirs = [
  ...flagDirs(dryOut.match(/^#\$ INCLUDES=(.*)$/m)?.[1] ?? '', '-I'),
  ...(top ? [join(top, 'include'), join(top, 'targets', 'x86_64-linux', 'include')] : []),
  ...flagDirs(process.env.CUDAFLAGS ?? '', '-I'),
  ...envDirs('CPATH'),
  '/usr/include',
  '/usr/local/include',
];
const libDirs = [
  ...flagDirs(dryOut.match(/^#\$ LIBRARIES=(.*)$/m)?.[1] ?? '', '-L'),
  ...(top ? ['lib64', 'lib', 'lib64/stubs', 'lib/stubs'].map((d) => join(top, d)) : []),
  ...envDirs('CMAKE_LIBRARY_PATH'),
  ...envDirs('LIBRARY_PATH'),
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/x86_64-linux-gnu/stubs',
  '/usr/lib64',
  '/usr/lib',
];
let cublasHeader = includeDirs.find((d) => existsSync(join(d, 'cublas_v2.h')));
let cublasLib = libDirs.find((d) => existsSync(join(d, 'libcublas.so')));

// Files under dir, down to `depth` folders.
function walk(dir, depth, out = []) {
  let entries = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (depth > 0) walk(p, depth - 1, out);
    } else out.push(p);
  }
  return out;
}
// A toolkit assembled from NVIDIA's Python wheels (nvcc beside PyTorch, as on the rented GPU
// machines) has cuBLAS in a wheel (site-packages/nvidia/...), with only versioned libraries
// (libcublas.so.13), which CMake's find_library does not take.
function wheelCublas() {
  const py = has('python3', ['-c', 'import nvidia; print("\\n".join(nvidia.__path__))']);
  if (py.error || py.status !== 0) return null;
  for (const base of py.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const files = walk(base, 3);
    const header = files.find((f) => basename(f) === 'cublas_v2.h');
    const lib = files.find((f) => /^libcublas\.so\.\d+$/.test(basename(f)));
    const lt = files.find((f) => /^libcublasLt\.so\.\d+$/.test(basename(f)));
    if (header && lib && lt) return { include: dirname(header), lib, lt };
  }
  return null;
}
const links = []; // [unversioned name, file] for native/build-cuda-links/
if (!cublasHeader || !cublasLib) {
  const wheel = wheelCublas();
  if (wheel) {
    cublasHeader = wheel.include;
    cublasLib = dirname(wheel.lib);
    links.push(['libcublas.so', wheel.lib], ['libcublasLt.so', wheel.lt]);
    links.push([basename(wheel.lib), wheel.lib], [basename(wheel.lt), wheel.lt]);
    env.CUDAFLAGS = [env.CUDAFLAGS, `-I${wheel.include}`].filter(Boolean).join(' ');
    env.LD_LIBRARY_PATH = [cublasLib, env.LD_LIBRARY_PATH].filter(Boolean).join(delimiter);
  }
}
if (!cublasHeader || !cublasLib) {
  fail(
    `cuBLAS not found next to nvcc ${toolkitVersion} (${nvcc.cmd}): ggml-cuda links cuBLAS. ` +
      `${cublasHeader ? '' : `No cublas_v2.h in ${[...new Set(includeDirs)].join(', ')}. `}` +
      `${cublasLib ? '' : `No libcublas.so in ${[...new Set(libDirs)].join(', ')}. `}` +
      'Install the toolkit with cuBLAS (Debian 12: nvidia-cuda-toolkit, or the cuBLAS headers and ' +
      'stubs of nvidia-cuda-dev), or point at them with CUDAFLAGS=-I<dir> and CMAKE_LIBRARY_PATH=<dir> ' +
      '(docs/native.md, "CUDA build on a machine without a GPU").',
  );
}

// ggml-cuda also links the driver library (CUDA::cuda_driver): the toolkit's stub, else the
// installed driver's libcuda.so.1 under the unversioned name.
if (!libDirs.some((d) => existsSync(join(d, 'libcuda.so')))) {
  const ld = has('/sbin/ldconfig', ['-p']);
  const so1 = `${ld.stdout ?? ''}`.match(/libcuda\.so\.1 .*=> (\S+)/)?.[1];
  if (!so1) {
    fail(
      `libcuda.so not found (neither the toolkit's stub nor an installed driver's libcuda.so.1) in ${[...new Set(libDirs)].join(', ')}; add its folder to CMAKE_LIBRARY_PATH`,
    );
  }
  links.push(['libcuda.so', so1]);
}
if (links.length > 0) {
  const linkDir = join(root, 'native', 'build-cuda-links');
  mkdirSync(linkDir, { recursive: true });
  for (const [name, file] of links) {
    rmSync(join(linkDir, name), { force: true });
    symlinkSync(file, join(linkDir, name));
  }
  env.CMAKE_LIBRARY_PATH = [linkDir, env.CMAKE_LIBRARY_PATH].filter(Boolean).join(delimiter);
  console.log(
    `check:cuda: linked ${links.map(([n, f]) => `${n} -> ${f}`).join(', ')} in ${linkDir}`,
  );
}

const archs = process.env.OVERNIGHT_CUDA_ARCHS?.trim() || undefined;
const smi = has('nvidia-smi', ['-L']);
const devices = !smi.error && smi.status === 0 && /GPU \d+:/.test(smi.stdout);
if (!buildOnly && !devices) {
  fail(
    'no NVIDIA device found (nvidia-smi -L lists none or is missing); `npm run check:cuda -- --build-only` compiles without one',
  );
}
if (buildOnly && !devices && !archs) {
  fail(
    'no NVIDIA device, so ggml cannot detect the architectures: set OVERNIGHT_CUDA_ARCHS (e.g. 89, or "86;89")',
  );
}
console.log(
  `check:cuda: nvcc ${toolkitVersion} (${nvcc.cmd}), cuBLAS ${cublasHeader} + ${cublasLib}, ` +
    `architectures ${archs ?? "ggml's default (native: the GPUs present)"}`,
);
if (devices) console.log(smi.stdout.trim());

function build(backend) {
  const t = Date.now();
  const r = spawnSync(process.execPath, [buildScript, '--backend', backend], {
    stdio: 'inherit',
    env,
  });
  if (r.status !== 0)
    fail(`the ${backend} addon build (native/scripts/build.mjs) exited with ${r.status}`);
  return ((Date.now() - t) / 1000).toFixed(0);
}

const cudaS = build('cuda');
if (buildOnly) {
  console.log(
    `\ncheck:cuda summary (build only): CUDA addon built in ${cudaS} s with nvcc ${toolkitVersion}`,
  );
  console.log('check:cuda OK (build only; no GPU test ran)');
  process.exit(0);
}
const cpuS = build('cpu');

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
    cwd: root,
    encoding: 'utf8',
    env: { ...env, OVERNIGHT_GPU_TEST_BACKEND: 'cuda', OVERNIGHT_TRAINER_BACKEND: 'cuda' },
  },
);
process.stdout.write(test.stdout ?? '');
process.stderr.write(test.stderr ?? '');
const out = `${test.stdout ?? ''}`;
const counts = testCounts(out);
const num = (k) => counts[k];
console.log(
  `\ncheck:cuda summary: nvcc ${toolkitVersion}; build CUDA ${cudaS} s, CPU ${cpuS} s; GPU tests on CUDA: ${num('pass')} passed, ${num('fail')} failed, ${num('skipped')} skipped (${((Date.now() - t1) / 1000).toFixed(0)} s)`,
);
if (test.status !== 0) fail('GPU tests failed on CUDA');
if (Number.isNaN(num('pass'))) fail('no test summary in the output (see above)');
if (num('skipped') > 0 || /gpu-vulkan tests skipped/.test(out))
  fail('GPU tests were skipped (see the reason above)');
console.log('check:cuda OK');
