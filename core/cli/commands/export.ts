/**
 * `overnight export --run <id> [--checkpoint N] --format adapter|ollama|peft|merged --out <dir>
 * [--name N] [--overwrite] [--f16] [--type Q4_K_M] [--lmstudio <models dir> [--publisher P]]`: export a run's adapter, verify it, print the files, the
 * verification and the command lines (progress on stderr; Ctrl-C cancels and leaves nothing
 * under the final name). Exits 1 when a verification check failed.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import {
  exportFormats,
  mergeTypes,
  type ExportFormat,
  type ExportResult,
  type MergeType,
} from '../../../contract/index.ts';
import { UsageError, type CliCommand } from '../command.ts';
import { formatBytes } from '../format.ts';

export function describeExport(r: ExportResult): string {
  const lines = [
    `${r.format} export of run ${r.runId} (${r.checkpoint === null ? 'final adapter' : `checkpoint at step ${r.checkpoint}`})`,
    `written: ${r.path}`,
    ...r.files.map((f) => `  ${f.path}  ${formatBytes(f.bytes)}`),
    `verification: ${r.verification.ok ? 'passed' : 'FAILED'}`,
    ...r.verification.checks.map(
      (c) => `  [${c.ok ? 'ok' : 'FAILED'}] ${c.name}\n      ${c.detail}`,
    ),
    'commands:',
    ...r.commands.map((c) => `  # ${c.label}\n  ${c.command}`),
  ];
  return lines.join('\n');
}

export const exportCommands: CliCommand[] = [
  {
    words: ['export'],
    options: {
      run: { type: 'string' },
      checkpoint: { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      overwrite: { type: 'boolean' },
      f16: { type: 'boolean' },
      type: { type: 'string' },
      lmstudio: { type: 'string' },
      publisher: { type: 'string' },
    },
    summary: `Export a run's adapter or a kept checkpoint (${exportFormats.join(', ')}) to a folder, verified.`,
    async run(ctx, _args, values) {
      if (typeof values.run !== 'string') throw new UsageError('--run <id> is needed');
      const format = values.format;
      if (typeof format !== 'string' || !(exportFormats as readonly string[]).includes(format))
        throw new UsageError(`--format must be one of ${exportFormats.join(', ')}`);
      // merged: --type, and --lmstudio <models folder> (LM Studio's publisher/model/file layout)
      const lmstudio = typeof values.lmstudio === 'string' ? values.lmstudio : null;
      if (format !== 'merged') {
        for (const k of ['type', 'lmstudio', 'publisher'] as const)
          if (values[k] !== undefined) throw new UsageError(`--${k} is for --format merged`);
      }
      if (lmstudio !== null && typeof values.out === 'string')
        throw new UsageError('give --out or --lmstudio <models folder>, not both');
      if (values.publisher !== undefined && lmstudio === null)
        throw new UsageError('--publisher goes with --lmstudio');
      const out = lmstudio ?? values.out;
      if (typeof out !== 'string')
        throw new UsageError(
          format === 'merged'
            ? '--out <folder> (or --lmstudio <models folder>) is needed'
            : '--out <folder> is needed',
        );
      const type = values.type;
      if (type !== undefined && !(mergeTypes as readonly unknown[]).includes(type))
        throw new UsageError(`--type must be one of ${mergeTypes.join(', ')}`);
      let checkpoint: number | undefined;
      if (typeof values.checkpoint === 'string') {
        checkpoint = Number(values.checkpoint);
        if (!Number.isInteger(checkpoint) || checkpoint < 0)
          throw new UsageError('--checkpoint must be a step number');
      }
      const jobId = randomBytes(6).toString('hex');
      const engine = ctx.engine();
      const off = engine.events.subscribe('export.progress', (p) => {
        if (p.jobId !== jobId || ctx.json) return;
        if (p.phase === 'write' && p.total > 0)
          ctx.io.stderr(
            `\r${format === 'merged' ? p.message : 'writing'} ${Math.round((100 * p.done) / p.total)}%`,
          );
        else ctx.io.stderr(`\r${p.message}\n`);
      });
      const onSigint = (): void => {
        ctx.io.stderr('\ncancelling the export\n');
        engine.exports.cancel(jobId);
      };
      process.once('SIGINT', onSigint);
      let r: ExportResult;
      try {
        r = await ctx.call('export.run', {
          runId: values.run,
          format: format as ExportFormat,
          outDir: resolve(out),
          jobId,
          ...(checkpoint !== undefined ? { checkpoint } : {}),
          ...(typeof values.name === 'string' ? { name: values.name } : {}),
          overwrite: values.overwrite === true,
          precision: values.f16 === true ? 'f16' : 'f32',
          ...(type !== undefined ? { type: type as MergeType } : {}),
          lmstudio: lmstudio !== null,
          ...(typeof values.publisher === 'string' ? { publisher: values.publisher } : {}),
        });
      } finally {
        off();
        process.off('SIGINT', onSigint);
      }
      ctx.print(r, () => describeExport(r));
      if (!r.verification.ok) process.exitCode = 1;
    },
  },
];
