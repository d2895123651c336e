/**
 * `overnight datasets import|list|show|remove|stats|preview`.
 * `import` shows a progress bar on a terminal, prints every problem (capped, with a summary)
 * and imports only when there are none, or with `--accept-problems` (the bad rows are left out).
 * Exit status: 0 imported, 1 refused (problems not accepted, or nothing valid).
 */
import {
  OvernightError,
  datasetFormatSchema,
  maskModeSchema,
  type DatasetInfo,
  type ProblemReportPayload,
  type TokenStatsPayload,
} from '../../../contract/index.ts';
import { parseMapping } from '../../datasets/formats.ts';
import { UsageError, type CliCommand, type CliContext } from '../command.ts';
import { formatBytes, keyValues, table } from '../format.ts';

function describeDataset(d: DatasetInfo): string {
  const s = d.stats;
  return keyValues([
    ['id', d.id],
    ['name', d.name],
    ['source', `${d.sourcePath} (${formatBytes(d.sourceSize)}, ${d.kind})`],
    ['format', d.format],
    [
      'mapping',
      Object.entries(d.mapping)
        .map(([k, v]) => (k === v ? k : `${k}=${v}`))
        .join(', '),
    ],
    ['records', String(d.records)],
    [
      'messages',
      `${s.messages} (system ${s.roles.system}, user ${s.roles.user}, assistant ${s.roles.assistant})`,
    ],
    ['text records', String(s.textRecords)],
    ['characters', s.chars.toLocaleString('en-US')],
    ['left out', `${d.counts.invalid} invalid, ${d.counts.duplicates} duplicate(s)`],
    [
      'problems',
      d.problems.length
        ? d.problems.map((p) => `${p.count} ${p.code} (${p.severity})`).join(', ')
        : 'none',
    ],
    ['stored', `${formatBytes(d.storedBytes)}, sha256 ${d.hash}`],
    ['imported', d.createdAt],
  ]);
}

function problemLines(r: ProblemReportPayload): string {
  const lines = r.items.map(
    (p) =>
      `  ${p.file}:${p.line}:${p.field ? ` ${p.field}:` : ''} ${p.severity}: expected ${p.expected}, found ${p.found}`,
  );
  if (r.truncated) lines.push(`  … and ${r.errors + r.warnings - r.items.length} more`);
  const sum = r.summary
    .map((s) => `${s.count} ${s.code}${s.severity === 'warning' ? ' (warning)' : ''}`)
    .join(', ');
  return `${r.errors} error(s), ${r.warnings} warning(s)${sum ? `: ${sum}` : ''}\n${lines.join('\n')}`;
}

function bar(done: number, total: number, width = 30): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(0).padStart(3)}%`;
}

function withProgress<T>(ctx: CliContext, f: () => Promise<T>): Promise<T> {
  const tty = process.stderr.isTTY && !ctx.json;
  if (!tty) return f();
  const off = ctx.engine().events.subscribe('datasets.importProgress', (p) => {
    process.stderr.write(
      `\r\x1b[K${bar(p.bytesRead, p.totalBytes)} ${formatBytes(p.bytesRead)}/${formatBytes(p.totalBytes)}  ${p.records} records`,
    );
  });
  return f().finally(() => {
    off();
    process.stderr.write('\r\x1b[K');
  });
}

function sourceParams(file: string, values: Record<string, string | boolean | undefined>) {
  const out: {
    path: string;
    format?: DatasetInfo['format'];
    mapping?: ReturnType<typeof parseMapping>;
  } = { path: file };
  if (typeof values.format === 'string') {
    const f = datasetFormatSchema.safeParse(values.format);
    if (!f.success)
      throw new UsageError(
        `--format: expected one of ${datasetFormatSchema.options.join(', ')}, found "${values.format}"`,
      );
    out.format = f.data;
  }
  if (typeof values.map === 'string') {
    try {
      out.mapping = parseMapping(values.map);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  return out;
}

function maskOf(values: Record<string, string | boolean | undefined>) {
  if (values.mask === undefined) return 'assistant' as const;
  const m = maskModeSchema.safeParse(values.mask);
  if (!m.success)
    throw new UsageError(
      `--mask: expected one of ${maskModeSchema.options.join(', ')}, found "${String(values.mask)}"`,
    );
  return m.data;
}

function seqLenOf(values: Record<string, string | boolean | undefined>): number {
  if (values['seq-len'] === undefined) return 2048;
  const n = Number(values['seq-len']);
  if (!Number.isInteger(n) || n < 16)
    throw new UsageError(
      `--seq-len: expected an integer >= 16, found "${String(values['seq-len'])}"`,
    );
  return n;
}

function describeStats(s: TokenStatsPayload): string {
  const maxCount = Math.max(1, ...s.histogram.counts);
  const hist = s.histogram.counts
    .map(
      (c, i) =>
        `  ${String(s.histogram.edges[i]).padStart(6)}-${String(s.histogram.edges[i + 1]! - 1).padEnd(6)} ${'█'.repeat(Math.round((c / maxCount) * 40))} ${c}`,
    )
    .join('\n');
  const pct = s.totalTokens ? ((100 * s.trainedTokens) / s.totalTokens).toFixed(1) : '0';
  return [
    keyValues([
      ['records', String(s.records)],
      [
        'tokens',
        `${s.totalTokens.toLocaleString('en-US')} (mean ${s.meanTokens.toFixed(1)}, max ${s.maxTokens})`,
      ],
      ['trained tokens', `${s.trainedTokens.toLocaleString('en-US')} (${pct}%, mask ${s.mask})`],
      [
        `at seq len ${s.seqLen}`,
        `${s.truncated} truncated, ${s.dropped} dropped, ${s.windows} windows (${(100 * s.fillRatio).toFixed(1)}% full), ${s.trainedTokensAtSeqLen.toLocaleString('en-US')} trained tokens`,
      ],
    ]),
    'token lengths:',
    hist,
    ...s.warnings.map((w) => `WARNING: ${w}`),
  ].join('\n');
}

export const datasetsCommands: CliCommand[] = [
  {
    words: ['datasets', 'import'],
    args: ['<file>'],
    options: {
      format: { type: 'string' },
      map: { type: 'string' },
      name: { type: 'string' },
      'accept-problems': { type: 'boolean' },
    },
    summary:
      'Import a dataset (JSONL, JSON, CSV/TSV, Parquet, text/Markdown). --format openai|sharegpt|alpaca|completion|text, --map ours=theirs,...',
    async run(ctx, [file], values) {
      const params = {
        ...sourceParams(file!, values),
        ...(typeof values.name === 'string' ? { name: values.name } : {}),
        acceptProblems: values['accept-problems'] === true,
      };
      const r = await withProgress(ctx, () => ctx.call('datasets.import', params));
      if (r.status === 'needs_confirmation') {
        ctx.print(r, () => problemLines(r.problems));
        throw new OvernightError(
          'INVALID_FILE',
          `nothing imported: ${r.counts.invalid + r.counts.duplicates} of ${r.counts.rows} rows would be left out; re-run with --accept-problems to import the ${r.counts.valid} valid records`,
        );
      }
      ctx.print(r, () => {
        const head = r.existing
          ? `Already imported as ${r.dataset.id} ("${r.dataset.name}").`
          : `Imported ${r.dataset.records} records as ${r.dataset.id}.`;
        const probs =
          r.problems.errors + r.problems.warnings > 0 ? `\n${problemLines(r.problems)}` : '';
        return `${head}${probs}\n${describeDataset(r.dataset)}`;
      });
    },
  },
  {
    words: ['datasets', 'inspect'],
    args: ['<file>'],
    options: { format: { type: 'string' }, map: { type: 'string' } },
    summary:
      'Detect the format, preview the first records and list every problem (stores nothing).',
    async run(ctx, [file], values) {
      const r = await withProgress(ctx, () =>
        ctx.call('datasets.inspect', sourceParams(file!, values)),
      );
      ctx.print(r, () =>
        [
          keyValues([
            ['file', `${r.path} (${formatBytes(r.size)}, ${r.kind})`],
            [
              'format',
              `${r.detection.format} (${Math.round(r.detection.confidence * 100)}% of sampled rows)`,
            ],
            ['mapping', JSON.stringify(r.detection.mapping)],
            [
              'rows',
              `${r.counts.rows}: ${r.counts.valid} valid, ${r.counts.invalid} invalid, ${r.counts.duplicates} duplicate(s)`,
            ],
          ]),
          'preview:',
          ...r.preview.map(
            (p) =>
              `  line ${p.line}: ${p.record ? JSON.stringify(p.record).slice(0, 160) : '(invalid)'}`,
          ),
          problemLines(r.problems),
        ].join('\n'),
      );
    },
  },
  {
    words: ['datasets', 'list'],
    summary: 'List the imported datasets.',
    async run(ctx) {
      const list = await ctx.call('datasets.list', {});
      ctx.print(list, () =>
        list.length === 0
          ? 'No datasets yet. Import one with: overnight datasets import <file>'
          : table(
              ['ID', 'NAME', 'FORMAT', 'RECORDS', 'SOURCE', 'SIZE'],
              list.map((d) => [
                d.id,
                d.name,
                d.format,
                String(d.records),
                d.sourceName,
                formatBytes(d.storedBytes),
              ]),
            ),
      );
    },
  },
  {
    words: ['datasets', 'show'],
    args: ['<id>'],
    summary: 'Show one dataset.',
    async run(ctx, [id]) {
      const d = await ctx.call('datasets.show', { id: id! });
      ctx.print(d, () => describeDataset(d));
    },
  },
  {
    words: ['datasets', 'remove'],
    args: ['<id>'],
    summary: 'Remove a dataset (its stored records; the source file is kept).',
    async run(ctx, [id]) {
      const r = await ctx.call('datasets.remove', { id: id! });
      if (!r.removed) throw new OvernightError('NOT_FOUND', `no dataset with id "${id}"`);
      ctx.print(r, () => `Removed dataset ${id} (the source file is kept).`);
    },
  },
  {
    words: ['datasets', 'stats'],
    args: ['<id>'],
    options: { model: { type: 'string' }, 'seq-len': { type: 'string' }, mask: { type: 'string' } },
    summary:
      "Token stats under a model's chat template: --model <id> [--seq-len N] [--mask assistant|all|last].",
    async run(ctx, [id], values) {
      if (typeof values.model !== 'string')
        throw new UsageError('--model <id> is required (see overnight models list)');
      const tty = process.stderr.isTTY && !ctx.json;
      const off = tty
        ? ctx
            .engine()
            .events.subscribe('datasets.statsProgress', (p) =>
              process.stderr.write(
                `\r\x1b[K${bar(p.done, p.total)} tokenized ${p.done}/${p.total} records`,
              ),
            )
        : () => {};
      const params = {
        id: id!,
        modelId: values.model,
        seqLen: seqLenOf(values),
        mask: maskOf(values),
      };
      const s = await ctx.call('datasets.stats', params).finally(() => {
        off();
        if (tty) process.stderr.write('\r\x1b[K');
      });
      ctx.print(s, () => describeStats(s));
    },
  },
  {
    words: ['datasets', 'preview'],
    args: ['<id>'],
    options: { model: { type: 'string' }, index: { type: 'string' }, mask: { type: 'string' } },
    summary:
      'One record as the model sees it; trained tokens in [[...]], special tokens as-is: --model <id> [--index N].',
    async run(ctx, [id], values) {
      if (typeof values.model !== 'string')
        throw new UsageError('--model <id> is required (see overnight models list)');
      const index = values.index === undefined ? 0 : Number(values.index);
      if (!Number.isInteger(index) || index < 0)
        throw new UsageError(`--index: expected an integer >= 0, found "${String(values.index)}"`);
      const p = await ctx.call('datasets.preview', {
        id: id!,
        modelId: values.model,
        index,
        mask: maskOf(values),
      });
      ctx.print(p, () => {
        let out = '';
        let open = false;
        for (const t of p.tokens) {
          if (t.trained && !open) out += '[[';
          if (!t.trained && open) out += ']]';
          open = t.trained;
          out += t.text;
        }
        if (open) out += ']]';
        return `record ${p.index + 1} of ${p.total}, ${p.trained} trained of ${p.tokens.length} tokens\n${out}${p.warning ? `\nWARNING: ${p.warning}` : ''}`;
      });
    },
  },
];
