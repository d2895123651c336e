/**
 * The device a run trains on and its free memory, for the memory estimate: the first GPU when
 * the trainer was built with a GPU backend and the config does not ask for the CPU, else system
 * RAM (the CPU backend keeps everything there).
 */
import os from 'node:os';
import type { RunConfig } from '../../contract/index.ts';
import { getSystemInfo } from '../system/info.ts';
import { trainerBackends } from '../system/trainer-backends.ts';

export async function trainingDevice(
  cfg: Pick<RunConfig, 'backend'>,
  sys: { dataDir: string; appVersion: string },
): Promise<{ name: string; freeBytes: number }> {
  const gpuBackends = trainerBackends().filter((b) => b !== 'cpu');
  if (cfg.backend !== 'cpu' && gpuBackends.length > 0) {
    const info = await getSystemInfo(sys);
    const gpu = info.gpus.find((g) => cfg.backend === 'auto' || g.backend === cfg.backend);
    if (gpu) return { name: `${gpu.name} (${gpu.backend})`, freeBytes: gpu.vramFree };
  }
  return { name: 'CPU (system RAM)', freeBytes: os.freemem() };
}
