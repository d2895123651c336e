/**
 * Backends our native trainer was built with, read without loading the addon (the addon holds
 * its own ggml and must only be loaded in the training child process):
 *   1. `native/build/build-info.json` `{ "backends": ["cpu", "cuda"] }`, if the native build writes it;
 *   2. else the CMake cache of that build (GGML_CUDA / GGML_VULKAN / GGML_METAL = ON);
 *   3. else CPU only. CPU is always included;
 * plus every GPU addon built beside it in native/build-<backend> (issue #10).
 * This is the one place that answers the question.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const buildDir = fileURLToPath(new URL('../../native/build/', import.meta.url));
const nativeDir = fileURLToPath(new URL('../../native/', import.meta.url));
/** GPU backends with an addon of their own beside the CPU one (native/build-<backend>). */
const GPU_ADDONS = ['cuda', 'metal', 'vulkan'] as const;
const GPU_FLAGS: [string, string][] = [
  ['GGML_CUDA', 'cuda'],
  ['GGML_VULKAN', 'vulkan'],
  ['GGML_METAL', 'metal'],
];

export function trainerBackends(dir: string = buildDir, root: string | null = nativeDir): string[] {
  const out = new Set<string>(['cpu']);
  // 0. a GPU addon built beside the CPU one (npm run build:native:<backend>).
  if (root !== null) {
    for (const b of GPU_ADDONS) {
      if (existsSync(join(root, `build-${b}`, 'Release', 'overnight_native.node'))) out.add(b);
    }
  }
  const info = readText(`${dir}/build-info.json`);
  if (info !== null) {
    try {
      const parsed = JSON.parse(info) as { backends?: unknown };
      if (Array.isArray(parsed.backends)) {
        for (const b of parsed.backends) if (typeof b === 'string') out.add(b);
        return [...out];
      }
    } catch {
      // fall through to the CMake cache
    }
  }
  const cache = readText(`${dir}/CMakeCache.txt`);
  if (cache !== null) {
    for (const [flag, name] of GPU_FLAGS) {
      if (new RegExp(`^${flag}:BOOL=(ON|TRUE|1)$`, 'mi').test(cache)) out.add(name);
    }
  }
  return [...out];
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The backend a run trains on and why, in words for the System page and `overnight system`. */
export interface BackendChoice {
  backend: 'cpu' | 'cuda' | 'vulkan' | 'metal';
  reason: string;
}

const LABEL: Record<string, string> = {
  cuda: 'CUDA',
  vulkan: 'Vulkan',
  metal: 'Metal',
  cpu: 'CPU',
};

/**
 * The rule that picks the training backend (pure): with `auto`, a GPU backend when its addon
 * was built AND a device for it is present (CUDA, then Metal, then Vulkan; Vulkan runs on any
 * GPU), else the CPU. An explicit backend is used when its addon is built, else the CPU with
 * the reason. `devices` are the GPUs found on the machine (backend + name).
 */
export function chooseTrainerBackend(
  requested: string,
  built: readonly string[],
  devices: readonly { backend: string; name: string }[],
): BackendChoice {
  if (requested === 'cpu')
    return { backend: 'cpu', reason: 'CPU: the run config asks for the CPU' };
  const deviceFor = (b: string) =>
    devices.find((d) => d.backend === b) ?? (b === 'vulkan' ? devices[0] : undefined);
  const order = requested === 'auto' ? [...GPU_ADDONS] : [requested];
  const gpuBuilt = order.filter((b) => built.includes(b));
  for (const b of gpuBuilt) {
    const dev = deviceFor(b);
    if (dev) {
      return {
        backend: b as BackendChoice['backend'],
        reason: `${LABEL[b]}: addon built, device '${dev.name}' present`,
      };
    }
  }
  if (gpuBuilt.length > 0) {
    const names = gpuBuilt.map((b) => LABEL[b] ?? b).join(', ');
    return { backend: 'cpu', reason: `CPU: ${names} addon built but no ${names} device found` };
  }
  const cmd = requested === 'auto' ? 'vulkan' : requested;
  return {
    backend: 'cpu',
    reason:
      requested === 'auto'
        ? `CPU: no GPU addon built (npm run build:native:${cmd})`
        : `CPU: the run asks for ${LABEL[requested] ?? requested} but its addon is not built (npm run build:native:${cmd})`,
  };
}
