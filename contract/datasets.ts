/**
 * Datasets: import a file (JSONL, JSON, CSV/TSV, Parquet, text/Markdown) into normalised
 * records, see every problem first, and see exactly what a model would train on (tokens,
 * label mask, stats at a sequence length).
 */
import { z } from 'zod';
import { event, method } from './define.ts';

export const datasetIdSchema = z.string().min(1);

export const datasetFormatSchema = z.enum(['openai', 'sharegpt', 'alpaca', 'completion', 'text']);
export type DatasetFormatName = z.infer<typeof datasetFormatSchema>;
export const datasetFileKindSchema = z.enum(['jsonl', 'json', 'csv', 'tsv', 'parquet', 'text']);
export const maskModeSchema = z.enum(['assistant', 'all', 'last']);
export type MaskModeName = z.infer<typeof maskModeSchema>;

/** Our field name -> the source's field (column) name. */
export const fieldMappingSchema = z
  .object({
    messages: z.string(),
    role: z.string(),
    content: z.string(),
    conversations: z.string(),
    from: z.string(),
    value: z.string(),
    instruction: z.string(),
    input: z.string(),
    output: z.string(),
    system: z.string(),
    prompt: z.string(),
    completion: z.string(),
    text: z.string(),
  })
  .partial()
  .strict();
type MappingField = keyof z.infer<typeof fieldMappingSchema>;

/**
 * The formats, one row each, in the order a shell lists them: the label a person picks, what a
 * record looks like, and the fields of the mapping the format uses (the engine resolves those;
 * the import wizard lets the user remap them).
 */
export const datasetFormats: Record<
  DatasetFormatName,
  { label: string; description: string; fields: readonly MappingField[] }
> = {
  openai: {
    label: 'OpenAI chat (messages: role / content)',
    description: '`{ messages: [{ role, content }] }` with system / user / assistant',
    fields: ['messages', 'role', 'content'],
  },
  sharegpt: {
    label: 'ShareGPT (conversations: from / value)',
    description: '`{ conversations: [{ from, value }] }` with human / gpt / system',
    fields: ['conversations', 'from', 'value'],
  },
  alpaca: {
    label: 'Alpaca (instruction / input / output)',
    description: '`{ instruction, input?, output, system? }`',
    fields: ['instruction', 'input', 'output', 'system'],
  },
  completion: {
    label: 'Prompt / completion pairs',
    description: '`{ prompt, completion }` (one user turn, one assistant turn)',
    fields: ['prompt', 'completion', 'system'],
  },
  text: {
    label: 'Raw text (continued pre-training: every token trained)',
    description: 'raw text (`{ text }` rows, or a .txt / .md file): every token trained',
    fields: ['text'],
  },
};

export const datasetProblemSchema = z.object({
  code: z.string(),
  /** error: the record is left out; warning: imported, worth a look. */
  severity: z.enum(['error', 'warning']),
  file: z.string(),
  /** 1-based line (row for Parquet) where the record starts. */
  line: z.number().int(),
  /** Field path, e.g. `messages[2].role`; '' for the whole line. */
  field: z.string(),
  expected: z.string(),
  found: z.string(),
});
export type DatasetProblem = z.infer<typeof datasetProblemSchema>;

export const problemReportSchema = z.object({
  items: z.array(datasetProblemSchema),
  summary: z.array(
    z.object({
      code: z.string(),
      severity: z.enum(['error', 'warning']),
      count: z.number().int(),
      firstLine: z.number().int(),
    }),
  ),
  errors: z.number().int(),
  warnings: z.number().int(),
  truncated: z.boolean(),
});
export type ProblemReportPayload = z.infer<typeof problemReportSchema>;

export const messageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string(),
});
export const normalizedRecordSchema = z.union([
  z.object({ messages: z.array(messageSchema) }),
  z.object({ text: z.string() }),
]);
export type NormalizedRecordPayload = z.infer<typeof normalizedRecordSchema>;

export const recordStatsSchema = z.object({
  records: z.number().int(),
  conversations: z.number().int(),
  textRecords: z.number().int(),
  messages: z.number().int(),
  roles: z.object({
    system: z.number().int(),
    user: z.number().int(),
    assistant: z.number().int(),
  }),
  chars: z.number().int(),
});

export const scanCountsSchema = z.object({
  rows: z.number().int(),
  valid: z.number().int(),
  invalid: z.number().int(),
  duplicates: z.number().int(),
});

export const detectionSchema = z.object({
  format: datasetFormatSchema,
  mapping: fieldMappingSchema,
  confidence: z.number(),
  votes: z.record(z.string(), z.number().int()),
});

export const inspectResultSchema = z.object({
  file: z.string(),
  path: z.string(),
  size: z.number().int(),
  kind: datasetFileKindSchema,
  detection: detectionSchema,
  preview: z.array(
    z.object({
      line: z.number().int(),
      source: z.unknown(),
      record: normalizedRecordSchema.nullable(),
    }),
  ),
  problems: problemReportSchema,
  counts: scanCountsSchema,
  stats: recordStatsSchema,
});
export type InspectResultPayload = z.infer<typeof inspectResultSchema>;

export const datasetInfoSchema = z.object({
  id: datasetIdSchema,
  name: z.string(),
  /** The file it came from (base name and full path at import time); the file is never changed. */
  sourceName: z.string(),
  sourcePath: z.string(),
  sourceSize: z.number().int(),
  kind: datasetFileKindSchema,
  format: datasetFormatSchema,
  mapping: fieldMappingSchema,
  /** sha256 of the normalised records: the stored file is `<dataDir>/datasets/<hash>.jsonl`. */
  hash: z.string(),
  records: z.number().int(),
  storedBytes: z.number().int(),
  stats: recordStatsSchema,
  counts: scanCountsSchema,
  /** What was left out or flagged at import (counts by code). */
  problems: problemReportSchema.shape.summary,
  createdAt: z.string(),
});
export type DatasetInfo = z.infer<typeof datasetInfoSchema>;

const sourceInput = {
  path: z.string().min(1),
  kind: datasetFileKindSchema.optional(),
  format: datasetFormatSchema.optional(),
  mapping: fieldMappingSchema.optional(),
};

export const histogramSchema = z.object({
  edges: z.array(z.number().int()),
  counts: z.array(z.number().int()),
});

export const tokenStatsSchema = z.object({
  datasetId: datasetIdSchema,
  modelId: z.string(),
  mask: maskModeSchema,
  records: z.number().int(),
  totalTokens: z.number().int(),
  trainedTokens: z.number().int(),
  maxTokens: z.number().int(),
  meanTokens: z.number(),
  zeroTrained: z.number().int(),
  zeroTrainedSample: z.array(z.number().int()),
  renderErrors: z.number().int(),
  renderErrorSample: z.array(z.object({ index: z.number().int(), message: z.string() })),
  unstableBoundaries: z.number().int(),
  histogram: histogramSchema,
  seqLen: z.number().int(),
  truncated: z.number().int(),
  dropped: z.number().int(),
  /** Windows of seqLen the packed dataset makes (core/datasets/pack.ts). */
  windows: z.number().int(),
  trainedTokensAtSeqLen: z.number().int(),
  /** Tokens in those windows / (windows x seqLen): how little of the trained compute is padding. */
  fillRatio: z.number().min(0).max(1),
  /** Loud, human warnings: zero trained tokens, no chat template, render errors. */
  warnings: z.array(z.string()),
});
export type TokenStatsPayload = z.infer<typeof tokenStatsSchema>;

export const previewTokenSchema = z.object({
  id: z.number().int(),
  text: z.string(),
  trained: z.boolean(),
  special: z.boolean(),
});

export const datasetsMethods = {
  'datasets.inspect': method(
    z.object(sourceInput),
    inspectResultSchema,
    'Detect the format of a file, preview its first records and list every problem (stores nothing).',
  ),
  'datasets.import': method(
    z.object({
      ...sourceInput,
      name: z.string().min(1).optional(),
      /** Import the valid records even though some rows have errors (those rows are left out). */
      acceptProblems: z.boolean().default(false),
    }),
    z.discriminatedUnion('status', [
      z.object({
        status: z.literal('imported'),
        dataset: datasetInfoSchema,
        problems: problemReportSchema,
        existing: z.boolean(),
      }),
      z.object({
        status: z.literal('needs_confirmation'),
        problems: problemReportSchema,
        counts: scanCountsSchema,
      }),
    ]),
    'Import a dataset file; with errors, answers needs_confirmation unless acceptProblems.',
  ),
  'datasets.cancel': method(
    z.object({ path: z.string().min(1) }),
    z.object({ cancelled: z.boolean() }),
    'Stop a running inspect / import of a file (nothing is stored; the call answers CANCELLED).',
  ),
  'datasets.list': method(z.object({}), z.array(datasetInfoSchema), 'List the imported datasets.'),
  'datasets.show': method(
    z.object({ id: datasetIdSchema }),
    datasetInfoSchema,
    'Show one dataset.',
  ),
  'datasets.remove': method(
    z.object({ id: datasetIdSchema }),
    z.object({ removed: z.boolean() }),
    'Remove a dataset (its stored records; the source file is kept).',
  ),
  'datasets.records': method(
    z.object({
      id: datasetIdSchema,
      offset: z.number().int().nonnegative().default(0),
      limit: z.number().int().min(1).max(200).default(20),
    }),
    z.object({ total: z.number().int(), records: z.array(normalizedRecordSchema) }),
    'Read normalised records of a dataset.',
  ),
  'datasets.stats': method(
    z.object({
      id: datasetIdSchema,
      modelId: z.string().min(1),
      seqLen: z
        .number()
        .int()
        .min(16)
        .max(1 << 20)
        .default(2048),
      mask: maskModeSchema.default('assistant'),
    }),
    tokenStatsSchema,
    "Tokenize every record with the model's chat template: tokens, trained tokens, histogram, truncation at seqLen.",
  ),
  'datasets.preview': method(
    z.object({
      id: datasetIdSchema,
      modelId: z.string().min(1),
      index: z.number().int().nonnegative().default(0),
      mask: maskModeSchema.default('assistant'),
    }),
    z.object({
      index: z.number().int(),
      total: z.number().int(),
      record: normalizedRecordSchema,
      tokens: z.array(previewTokenSchema),
      trained: z.number().int(),
      /** A loud warning when this record trains nothing (or cannot be rendered). */
      warning: z.string().nullable(),
    }),
    'One record as the model will see it: tokens, trained flags, special tokens marked.',
  ),
} as const;

export const datasetsEvents = {
  'datasets.importProgress': event(
    z.object({
      path: z.string(),
      file: z.string(),
      bytesRead: z.number().int(),
      totalBytes: z.number().int(),
      records: z.number().int(),
    }),
    'Bytes read and records accepted so far while inspecting or importing a file.',
  ),
  'datasets.statsProgress': event(
    z.object({
      id: datasetIdSchema,
      modelId: z.string(),
      done: z.number().int(),
      total: z.number().int(),
    }),
    'Records tokenized so far while computing datasets.stats.',
  ),
  'datasets.changed': event(
    z.object({ ids: z.array(datasetIdSchema) }),
    'The dataset list changed.',
  ),
} as const;
