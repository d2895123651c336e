/** `system.info`: what the engine's machine offers for training and inference. */
import os from 'node:os';
import type { SystemInfo } from '../../contract/index.ts';
import type { Handlers } from '../rpc/handlers.ts';
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

  const gpus: SystemInfo['gpus'] = [];
  try {
    const llama = await getSharedLlama();
    if (llama.gpu !== false) {
      const vram = await llama.getVramState();
      const names = await llama.getGpuDeviceNames();
      const n = Math.max(names.length, 1);
      // getVramState() sums every device; with several devices each gets an equal share.
      for (const name of names.length ? names : [String(llama.gpu)]) {
        gpus.push({ backend: llama.gpu, name, vramTotal: vram.total / n, vramFree: vram.free / n });
      }
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

export function systemHandlers(deps: SystemDeps): Handlers<'system.info'> {
  return {
    'system.info': () => getSystemInfo(deps),
  };
}
