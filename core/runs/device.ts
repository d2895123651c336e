/**
 * The device a run trains on and its free memory, for the memory estimate, and the trainer
 * backend the job opens (core/system/trainer-backends.ts chooseTrainerBackend): a GPU when an
 * addon was built with one and a device for it is present, else the CPU (system RAM).
 */
import os from 'node:os';
import type { RunConfig } from '../../contract/index.ts';
import { getSystemInfo } from '../system/info.ts';
import {
  chooseTrainerBackend,
  trainerBackends,
  type BackendChoice,
} from '../system/trainer-backends.ts';

export async function trainingDevice(
  cfg: Pick<RunConfig, 'backend'>,
  sys: { dataDir: string; appVersion: string },
): Promise<{ name: string; freeBytes: number; backend: BackendChoice['backend']; reason: string }> {
  const built = trainerBackends();
  // Only look for GPUs (node-llama-cpp) when a GPU addon could use one.
  const gpus = cfg.backend !== 'cpu' && built.length > 1 ? (await getSystemInfo(sys)).gpus : [];
  const choice = chooseTrainerBackend(cfg.backend, built, gpus);
  if (choice.backend !== 'cpu') {
    const gpu =
      gpus.find((g) => g.backend === choice.backend) ??
      (choice.backend === 'vulkan' ? gpus[0] : undefined);
    if (gpu) return { name: `${gpu.name} (${choice.backend})`, freeBytes: gpu.vramFree, ...choice };
  }
  return { name: 'CPU (system RAM)', freeBytes: os.freemem(), ...choice };
}
