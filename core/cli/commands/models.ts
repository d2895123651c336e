/** `overnight models add|list|show|remove`. */
import { OvernightError, type ModelInfo } from '../../../contract/index.ts';
import type { CliCommand } from '../command.ts';
import { formatBytes, formatCount, keyValues, table } from '../format.ts';

export function describeModel(m: ModelInfo): string {
  const types = Object.entries(m.tensorTypes)
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => `${t} ×${n}`)
    .join(', ');
  const template = m.chatTemplate.present ? (m.chatTemplate.family ?? 'unknown') : 'none';
  return keyValues([
    ['id', m.id],
    ['name', m.name],
    ['path', m.path],
    ['architecture', m.architecture],
    [
      'parameters',
      `${formatCount(m.parameterCount)} (${m.parameterCount.toLocaleString('en-US')})`,
    ],
    ['file type', m.fileType],
    ['tensor types', types],
    ['context length', String(m.contextLength)],
    ['layers', String(m.layers)],
    ['embedding size', String(m.embeddingSize)],
    ['vocab size', String(m.vocabSize)],
    ['chat template', template],
    ['file size', formatBytes(m.fileSize)],
    ['fingerprint', m.fingerprint],
    ['trainable', m.trainable.ok ? 'yes' : `no: ${m.trainable.reason ?? 'unknown reason'}`],
    ['added', m.addedAt],
    ['file', m.fileExists ? 'present' : 'missing (moved or deleted since it was added)'],
  ]);
}

export const modelsCommands: CliCommand[] = [
  {
    words: ['models', 'add'],
    args: ['<file>'],
    options: { name: { type: 'string' } },
    summary: 'Add a local .gguf file to the library (reads its metadata; the file is not copied).',
    async run(ctx, [file], values) {
      const name = typeof values.name === 'string' ? values.name : undefined;
      const m = await ctx.call('models.add', { path: file!, ...(name ? { name } : {}) });
      ctx.print(m, () => describeModel(m));
    },
  },
  {
    words: ['models', 'list'],
    summary: 'List the models in the library.',
    async run(ctx) {
      const list = await ctx.call('models.list', {});
      ctx.print(list, () =>
        list.length === 0
          ? 'No models yet. Add one with: overnight models add <file.gguf>'
          : table(
              ['ID', 'NAME', 'ARCH', 'PARAMS', 'TYPE', 'SIZE', 'TRAINABLE', 'FILE'],
              list.map((m) => [
                m.id,
                m.name,
                m.architecture,
                formatCount(m.parameterCount),
                m.fileType,
                formatBytes(m.fileSize),
                m.trainable.ok ? 'yes' : 'no',
                m.fileExists ? 'ok' : 'missing',
              ]),
            ),
      );
    },
  },
  {
    words: ['models', 'show'],
    args: ['<id>'],
    summary: 'Show one model.',
    async run(ctx, [id]) {
      const m = await ctx.call('models.show', { id: id! });
      ctx.print(m, () => describeModel(m));
    },
  },
  {
    words: ['models', 'remove'],
    args: ['<id>'],
    summary: 'Remove a model from the library (the file on disk is kept).',
    async run(ctx, [id]) {
      const r = await ctx.call('models.remove', { id: id! });
      if (!r.removed) throw new OvernightError('NOT_FOUND', `no model with id "${id}"`);
      ctx.print(r, () => `Removed ${id} from the library (the file is kept).`);
    },
  },
];
