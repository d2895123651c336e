/**
 * What one export format is: a module with its info (label, layout), a `write` that puts its
 * files under their final name atomically (files.ts), a `verify` that checks what was written
 * against the run's own adapter, and the command lines that use it. The service (service.ts)
 * resolves the run, the source adapter and the base model once and hands every format the same
 * `ExportContext`; formats/index.ts is the table of formats. docs/export.md: adding a format.
 */
import type {
  ExportCheck,
  ExportFormatInfo,
  ExportRequest,
  ModelInfo,
  Run,
} from '../../contract/index.ts';
import type { GgufHeader } from './gguf.ts';
import type { ProbeSet } from './verify.ts';

export interface ExportContext {
  run: Run;
  /** The base model (library entry). */
  model: ModelInfo;
  /** Checkpoint step, or null for the run's final adapter. */
  checkpoint: number | null;
  /** The run's own adapter GGUF (final, or written from the checkpoint by the trainer). */
  source: string;
  adapter: GgufHeader;
  /** The base model's header (metadata, tensor infos; no weights read). */
  base: GgufHeader;
  outDir: string;
  /** Checked (user's) or derived (sanitized) name: the file stem or the folder name. */
  name: string;
  overwrite: boolean;
  precision: 'f32' | 'f16';
  signal: AbortSignal;
  /** Bytes written so far of `total` (the 'write' phase). */
  progress(done: number, total: number, message: string): void;
  /** The run's probe prompts as the model is asked them, and the greedy comparison. */
  probes: ProbeSet;
  /** The request as parsed (format-only fields such as the merged model's `type`). */
  request: ExportRequest;
}

export interface Written {
  /** The file or folder under its final name. */
  path: string;
  files: { path: string; bytes: number }[];
  /** Where the adapter GGUF is, when the format writes one (adapter, ollama). */
  adapterGguf?: string;
}

export interface ExportFormatModule {
  info: ExportFormatInfo;
  /** The final path for `name` in `outDir` (checked for an existing one before anything runs). */
  target(outDir: string, name: string, request?: ExportRequest): string;
  /** Checks that need nothing written (e.g. a supported architecture); throws a clear error. */
  check?(ctx: ExportContext): void;
  write(ctx: ExportContext): Promise<Written>;
  verify(ctx: ExportContext, w: Written): Promise<ExportCheck[]>;
  commands(ctx: ExportContext, w: Written): { label: string; command: string }[];
}

/** A path quoted for a POSIX shell when it needs it. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
