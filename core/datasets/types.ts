/**
 * The shapes every part of the dataset pipeline shares: a normalised record, a problem found
 * while reading or validating, the formats we recognise and the field mapping that turns a
 * source row into a record. Plain data only (JSON-safe), so the contract can mirror it.
 */
import type { DatasetFormatName } from '../../contract/index.ts';

export type Role = 'system' | 'user' | 'assistant';
export interface Message {
  role: Role;
  content: string;
}

/** A normalised record: a conversation, or raw text for continued pre-training. */
export type NormalizedRecord = { messages: Message[] } | { text: string };

/** The formats: contract/datasets.ts's `datasetFormats` table (labels, descriptions, fields). */
export type DatasetFormat = DatasetFormatName;

export const fileKinds = ['jsonl', 'json', 'csv', 'tsv', 'parquet', 'text'] as const;
export type FileKind = (typeof fileKinds)[number];

/**
 * Source field names for the canonical fields of a format. Keys are ours, values name the
 * source's field (or column). Missing keys use the format's defaults / detected aliases.
 */
export interface FieldMapping {
  messages?: string;
  role?: string;
  content?: string;
  conversations?: string;
  from?: string;
  value?: string;
  instruction?: string;
  input?: string;
  output?: string;
  system?: string;
  prompt?: string;
  completion?: string;
  text?: string;
}
export const mappingKeys = [
  'messages',
  'role',
  'content',
  'conversations',
  'from',
  'value',
  'instruction',
  'input',
  'output',
  'system',
  'prompt',
  'completion',
  'text',
] as const satisfies readonly (keyof FieldMapping)[];

export const problemCodes = [
  'empty_file',
  'binary_file',
  'invalid_utf8',
  'invalid_json',
  'line_too_long',
  'not_an_object',
  'not_an_array',
  'missing_field',
  'wrong_type',
  'unknown_role',
  'empty_content',
  'empty_assistant',
  'no_assistant',
  'no_final_assistant',
  'ragged_row',
  'csv_quote',
  'duplicate',
  'mixed_format',
  'parquet',
] as const;
export type ProblemCode = (typeof problemCodes)[number];

/**
 * One problem in one place. `error`: the record is left out of the import (so importing needs
 * the user's consent); `warning`: the record is imported but worth a look.
 */
export interface Problem {
  code: ProblemCode;
  severity: 'error' | 'warning';
  /** Source file name (base name). */
  file: string;
  /** 1-based line of the file (JSONL, JSON, CSV: the line the record starts on), or row (Parquet). */
  line: number;
  /** Field path inside the record, e.g. `messages[2].role`; '' for the whole record / line. */
  field: string;
  expected: string;
  found: string;
}

export interface ProblemSummaryItem {
  code: ProblemCode;
  severity: 'error' | 'warning';
  count: number;
  firstLine: number;
}

export interface ProblemReport {
  /** The first problems in file order, at most the cap. */
  items: Problem[];
  /** Every problem counted by code, even those past the cap. */
  summary: ProblemSummaryItem[];
  errors: number;
  warnings: number;
  /** True when more problems were found than `items` holds. */
  truncated: boolean;
}

/** A raw source row: a JSON value with the place it came from, or a problem in its stead. */
export type RowProblem = Omit<Problem, 'file' | 'line'>;
export type RawRow = { line: number; value: unknown } | { line: number; problem: RowProblem };

export interface DatasetStats {
  records: number;
  conversations: number;
  textRecords: number;
  messages: number;
  /** Messages by role. */
  roles: Record<Role, number>;
  /** Characters of content (all records). */
  chars: number;
}
