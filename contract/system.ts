/** What the engine's machine offers for training: backends, GPUs, memory. */
import { z } from 'zod';
import { method } from './define.ts';

export const gpuInfoSchema = z.object({
  backend: z.string(), // cuda | vulkan | metal
  name: z.string(),
  vramTotal: z.number().nonnegative(),
  vramFree: z.number().nonnegative(),
});

export const systemInfoSchema = z.object({
  platform: z.string(),
  arch: z.string(),
  cpuModel: z.string(),
  /** Logical CPUs (hardware threads). */
  cpuCores: z.number().int(),
  /** Physical cores this process may use: the threads a run with `threads: 0` trains with. */
  cpuPhysicalCores: z.number().int(),
  ramTotal: z.number().nonnegative(),
  ramFree: z.number().nonnegative(),
  /** Backends the inference runtime (node-llama-cpp) can use here. */
  inferenceBackends: z.array(z.string()),
  /** Backends our native trainer was built with (always includes cpu). */
  trainerBackends: z.array(z.string()),
  /** The backend a run with backend 'auto' trains on, and why (core/system/trainer-backends.ts). */
  trainerBackend: z.object({ backend: z.string(), reason: z.string() }),
  gpus: z.array(gpuInfoSchema),
  appVersion: z.string(),
  dataDir: z.string(),
});
export type SystemInfo = z.infer<typeof systemInfoSchema>;

export const systemMethods = {
  'system.info': method(
    z.object({}),
    systemInfoSchema,
    'Backends, GPUs and memory of the engine machine.',
  ),
} as const;
