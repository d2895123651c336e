#!/usr/bin/env node
// Builds the Overnight native addon: native/build/Release/overnight_native.node (CPU, the
// default) or, for a GPU backend, native/build-<backend>/Release/overnight_native.node beside it
// (the binding picks one at load time: native/ts/binding.ts).
//
// 1. Extract llama.cpp from the git bundle shipped inside node-llama-cpp (same release as the
//    inference runtime) into native/llama.cpp. No network.
// 2. Reset that tree and apply native/patches/*.patch in name order.
// 3. Configure native/CMakeLists.txt with CMake (static llama/ggml + our addon) and build it.
//
// Backend: OVERNIGHT_GPU (or `npm config set overnight_gpu ...`, seen as npm_config_overnight_gpu,
// or `--backend <name>`) cpu (default) | cuda | vulkan | metal -> GGML_CUDA / GGML_VULKAN /
// GGML_METAL, each in its own build folder (native/build for cpu, native/build-<name> otherwise).
// Other knobs: OVERNIGHT_NATIVE_JOBS (parallel jobs, default = cores), OVERNIGHT_SKIP_NATIVE=1
// (skip entirely), OVERNIGHT_GGML_NATIVE=0 (portable build without -march=native),
// OVERNIGHT_CUDA_ARCHS (cuda only: CMAKE_CUDA_ARCHITECTURES, e.g. 89 or "86;89"; unset = ggml's
// default, which is "native" = the GPUs present at build time, so a machine without an NVIDIA
// GPU must set it).
// Incremental: a stamp hashes patches + addon sources + options; a match skips the build.
// `--force` reconfigures and rebuilds. `--dry-run` prints the backend, build folder and CMake
// configure arguments as JSON and exits (nothing is extracted, configured or built).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const rootDir = join(nativeDir, '..');
const srcDir = join(nativeDir, 'llama.cpp');
const patchesDir = join(nativeDir, 'patches');
const force = process.argv.includes('--force');
const dryRun = process.argv.includes('--dry-run');
const backendArg = process.argv.indexOf('--backend');
const require = createRequire(join(rootDir, 'package.json'));

function log(msg) {
  console.log(`[overnight native] ${msg}`);
}
function fail(msg) {
  console.error(`[overnight native] ERROR: ${msg}`);
  process.exit(1);
}
function run(cmd, args, opts = {}) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) fail(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} exited with status ${r.status}`);
}

if (process.env.OVERNIGHT_SKIP_NATIVE === '1') {
  log('OVERNIGHT_SKIP_NATIVE=1: skipping the native build');
  process.exit(0);
}

const gpu = (
  (backendArg > 0 ? process.argv[backendArg + 1] : undefined) ??
  process.env.OVERNIGHT_GPU ??
  process.env.npm_config_overnight_gpu ??
  'cpu'
).toLowerCase();
const backendFlags = {
  cpu: [],
  cuda: ['-DGGML_CUDA=ON'],
  vulkan: ['-DGGML_VULKAN=ON'],
  metal: ['-DGGML_METAL=ON'],
}[gpu];
if (!backendFlags) fail(`OVERNIGHT_GPU=${gpu}: expected one of cpu, cuda, vulkan, metal`);
if (gpu !== 'metal' && process.platform === 'darwin') backendFlags.push('-DGGML_METAL=OFF');
const cudaArchs =
  gpu === 'cuda' ? process.env.OVERNIGHT_CUDA_ARCHS?.trim() || undefined : undefined;
if (cudaArchs !== undefined && !/^[0-9a-z;,-]+$/.test(cudaArchs))
  fail(`OVERNIGHT_CUDA_ARCHS=${cudaArchs}: expected CUDA architectures such as 89 or "86;89-real"`);
// unset: drop a value cached by an earlier configure, so ggml's default applies again
if (gpu === 'cuda')
  backendFlags.push(
    cudaArchs === undefined
      ? '-UCMAKE_CUDA_ARCHITECTURES'
      : `-DCMAKE_CUDA_ARCHITECTURES=${cudaArchs.replaceAll(',', ';')}`,
  );
// OVERNIGHT_GPU / npm config (not --backend) selects a GPU addon *in addition to* the CPU one:
// the tests and the default engine path load the CPU addon, so it is built first.
if (gpu !== 'cpu' && backendArg < 0 && !dryRun) {
  const self = fileURLToPath(import.meta.url);
  const args = [self, '--backend', 'cpu', ...(force ? ['--force'] : [])];
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) fail('the CPU addon build failed');
}
const buildDir = join(nativeDir, gpu === 'cpu' ? 'build' : `build-${gpu}`);
const output = join(buildDir, 'Release', 'overnight_native.node');
const stampFile = join(buildDir, 'overnight.stamp');
const startedAt = Date.now();
const ggmlNative = process.env.OVERNIGHT_GGML_NATIVE !== '0';
const jobs = Number(process.env.OVERNIGHT_NATIVE_JOBS ?? cpus().length) || 1;

const bundle = join(rootDir, 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');
const nodeApiHeaders = require('node-api-headers').include_dir;
// the package's own include_dir is relative to the *current directory*; resolve it ourselves
const addonApiDir = dirname(require.resolve('node-addon-api/package.json'));

const configureArgs = [
  '-S',
  nativeDir,
  '-B',
  buildDir,
  '-DCMAKE_BUILD_TYPE=Release',
  `-DLLAMA_CPP_DIR=${srcDir}`,
  `-DNODE_API_HEADERS_DIR=${nodeApiHeaders}`,
  `-DNODE_ADDON_API_DIR=${addonApiDir}`,
  `-DGGML_NATIVE=${ggmlNative ? 'ON' : 'OFF'}`,
  '-DGGML_CUDA=OFF',
  '-DGGML_VULKAN=OFF',
  ...backendFlags,
];
if (dryRun) {
  console.log(JSON.stringify({ backend: gpu, buildDir, configureArgs }));
  process.exit(0);
}

const patches = existsSync(patchesDir)
  ? readdirSync(patchesDir)
      .filter((f) => f.endsWith('.patch'))
      .sort()
  : [];

function hashInputs() {
  const h = createHash('sha256');
  h.update(JSON.stringify({ gpu, ggmlNative, cudaArchs, v: 1 })); // cudaArchs unset: key omitted
  const files = [join(nativeDir, 'CMakeLists.txt'), join(nativeDir, 'scripts', 'build.mjs')];
  for (const p of patches) files.push(join(patchesDir, p));
  for (const f of readdirSync(join(nativeDir, 'src')).sort()) files.push(join(nativeDir, 'src', f));
  for (const f of files) {
    h.update(f);
    h.update(readFileSync(f));
  }
  if (existsSync(bundle)) h.update(String(statSync(bundle).size));
  return h.digest('hex');
}

// The backends this build has, for core/system/trainer-backends.ts (read without loading the
// addon); the packaged app ships this file next to the addon (build/electron-builder.yml).
const buildInfo = join(buildDir, 'build-info.json');
function writeBuildInfo() {
  const backends = gpu === 'cpu' ? ['cpu'] : ['cpu', gpu];
  writeFileSync(buildInfo, JSON.stringify({ backends }) + '\n');
}

const stamp = hashInputs();
if (
  !force &&
  existsSync(output) &&
  existsSync(stampFile) &&
  readFileSync(stampFile, 'utf8') === stamp
) {
  if (!existsSync(buildInfo)) writeBuildInfo();
  log(`up to date (${output})`);
  process.exit(0);
}

// 1. llama.cpp source from the bundle.
if (!existsSync(join(srcDir, '.git'))) {
  if (!existsSync(bundle))
    fail(`llama.cpp bundle not found at ${bundle} (is node-llama-cpp 3.21.1 installed?)`);
  log(`extracting llama.cpp from ${bundle}`);
  run('git', ['clone', '--quiet', bundle, srcDir]);
}

// 2. Patches, applied to a clean tree; a stamp avoids touching sources (and rebuilding) when unchanged.
const patchHash = createHash('sha256');
for (const p of patches) patchHash.update(readFileSync(join(patchesDir, p)));
const patchStamp = join(srcDir, '.overnight-patches');
const wantPatch = patchHash.digest('hex');
if (!existsSync(patchStamp) || readFileSync(patchStamp, 'utf8') !== wantPatch) {
  log('resetting llama.cpp tree and applying patches');
  run('git', ['-C', srcDir, 'checkout', '--quiet', '--', '.']);
  run('git', ['-C', srcDir, 'clean', '--quiet', '-fd', '-e', '.overnight-patches']);
  for (const p of patches) {
    log(`applying ${p}`);
    run('git', ['-C', srcDir, 'apply', '--whitespace=nowarn', join(patchesDir, p)]);
  }
  writeFileSync(patchStamp, wantPatch);
}

// 3. Configure + build.
mkdirSync(buildDir, { recursive: true });
const cacheExists = existsSync(join(buildDir, 'CMakeCache.txt'));
if (force || !cacheExists || !existsSync(stampFile) || readFileSync(stampFile, 'utf8') !== stamp) {
  log(
    `configuring (backend: ${gpu}, GGML_NATIVE=${ggmlNative ? 'ON' : 'OFF'}${gpu === 'cuda' ? `, CUDA architectures: ${cudaArchs ?? "ggml's default"}` : ''})`,
  );
  run('cmake', configureArgs);
}
log(`building with ${jobs} jobs (a full CPU build takes several minutes on 2 cores)`);
// The kernel check (test/native/kernels.test.ts) tests the CPU backend's patched kernels and is
// run from the CPU build; a GPU build leaves it out (an executable linked against the CUDA
// libraries would need the driver library at link time, which a build-only machine lacks).
const targets =
  gpu === 'cpu' ? ['overnight_native', 'overnight_kernel_check'] : ['overnight_native'];
run('cmake', [
  '--build',
  buildDir,
  '--config',
  'Release',
  '--target',
  ...targets,
  '-j',
  String(jobs),
]);
if (!existsSync(output)) fail(`build finished but ${output} is missing`);
writeBuildInfo();
writeFileSync(stampFile, stamp);
log(`built ${output} in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
