/** `system.info`: what the engine's machine offers for training and inference. */
import os from 'node:os';
import type { SystemInfo } from '../../contract/index.ts';
import type { Handlers } from '../rpc/handlers.ts';
import { physicalCores } from './cpu.ts';
import { getSharedLlama } from './llama.ts';
import { chooseTrainerBackend, trainerBackends } from './trainer-backends.ts';

export interface SystemDeps {
  dataDir: string;
  appVersion: string;
}

export async function getSystemInfo(deps: SystemDeps): Promise<SystemInfo> {
  const cpus = os.cpus();
  const { getLlamaGpuTypes } = await import('node-llama-cpp');
  const supported: unknown[] = await getLlamaGpuTypes('supported').catch(() => []);
  const inferenceBackends = [
    ...new Set([...supported.filter((g): g is string => typeof g === 'string'), 'cpu']),
  ];

  let gpus: SystemInfo['gpus'] = [];
  try {
    const llama = await getSharedLlama();
    if (llama.gpu !== false) {
      gpus = gpuDevices(llama.gpu, await llama.getGpuDeviceNames(), await llama.getVramState());
    }
  } catch {
    // No usable inference binary: report no GPUs rather than fail the whole call.
  }

  const built = trainerBackends();
  return {
    platform: process.platform,
    arch: process.arch,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCores: cpus.length,
    cpuPhysicalCores: physicalCores(),
    ramTotal: os.totalmem(),
    ramFree: os.freemem(),
    inferenceBackends,
    trainerBackends: built,
    trainerBackend: chooseTrainerBackend('auto', built, gpus),
    gpus,
    appVersion: deps.appVersion,
    dataDir: deps.dataDir,
  };
}

/**
 * The GPUs of node-llama-cpp's loaded build. getVramState() sums every device, so with several
 * devices each gets an equal share. A GPU build can load and find no device at all (its Vulkan
 * build on a machine whose only Vulkan device is a CPU-type one, such as Mesa's lavapipe): no
 * device names and no memory mean no GPU, not one nameless GPU with 0 bytes that a run would then
 * be refused on.
 */
export function gpuDevices(
  backend: SystemInfo['gpus'][number]['backend'],
  names: readonly string[],
  vram: { total: number; free: number },
): SystemInfo['gpus'] {
  if (names.length === 0 && vram.total <= 0) return [];
  const n = Math.max(names.length, 1);
  return (names.length ? names : [String(backend)]).map((name) => ({
    backend,
    name,
    vramTotal: vram.total / n,
    vramFree: vram.free / n,
  }));
}

export function systemHandlers(deps: SystemDeps): Handlers<'system.info'> {
  return {
    'system.info': () => getSystemInfo(deps),
  };
}
