/** `overnight system`. */
import type { CliCommand } from '../command.ts';
import { formatBytes, keyValues } from '../format.ts';

export const systemCommands: CliCommand[] = [
  {
    words: ['system'],
    summary: 'Show backends, GPUs and memory of this machine.',
    async run(ctx) {
      const s = await ctx.call('system.info', {});
      ctx.print(s, () =>
        keyValues([
          ['overnight', s.appVersion],
          ['platform', `${s.platform} ${s.arch}`],
          ['cpu', `${s.cpuModel} (${s.cpuPhysicalCores} physical cores, ${s.cpuCores} threads)`],
          ['training threads', `${s.cpuPhysicalCores} (threads: 0 = one per physical core)`],
          ['ram', `${formatBytes(s.ramFree)} free of ${formatBytes(s.ramTotal)}`],
          ['inference backends', s.inferenceBackends.join(', ')],
          ['trainer backends', s.trainerBackends.join(', ')],
          ['training uses', s.trainerBackend.reason],
          ...(s.gpus.length === 0
            ? ([['gpus', 'none']] as [string, string][])
            : s.gpus.map((g, i): [string, string] => [
                `gpu ${i}`,
                `${g.name} (${g.backend}), ${formatBytes(g.vramFree)} free of ${formatBytes(g.vramTotal)}`,
              ])),
          ['data dir', s.dataDir],
        ]),
      );
    },
  },
];
