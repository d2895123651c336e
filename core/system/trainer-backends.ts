/**
 * Backends our native trainer was built with, read without loading the addon (the addon holds
 * its own ggml and must only be loaded in the training child process):
 *   1. `native/build/build-info.json` `{ "backends": ["cpu", "cuda"] }`, if the native build writes it;
 *   2. else the CMake cache of that build (GGML_CUDA / GGML_VULKAN / GGML_METAL = ON);
 *   3. else CPU only. CPU is always included.
 * This is the one place that answers the question.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const buildDir = fileURLToPath(new URL('../../native/build/', import.meta.url));
const GPU_FLAGS: [string, string][] = [
  ['GGML_CUDA', 'cuda'],
  ['GGML_VULKAN', 'vulkan'],
  ['GGML_METAL', 'metal'],
];

export function trainerBackends(dir: string = buildDir): string[] {
  const out = new Set<string>(['cpu']);
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
