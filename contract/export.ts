/**
 * Exports of a run's adapter (its final one or a kept checkpoint's) to a folder the user picks:
 * a GGUF LoRA adapter (llama.cpp, node-llama-cpp, Ollama), an Ollama package (adapter +
 * Modelfile + README), a PEFT / Hugging Face adapter (safetensors + adapter_config.json). Every
 * export is verified as part of the call and the result says against what. One module per
 * format (core/export/formats/), registered in one table; docs/export.md says how to add one.
 */
import { z } from 'zod';
import { event, method } from './define.ts';

/** The formats, in the order the UI offers them. A new format adds its id here and a module. */
export const exportFormats = ['adapter', 'ollama', 'peft', 'merged'] as const;
export type ExportFormat = (typeof exportFormats)[number];

/**
 * Types of a merged model (format 'merged'): F16 is written by the merge itself, the others by
 * llama.cpp's llama_model_quantize from it. Tensors the adapter does not touch keep their type.
 */
export const mergeTypes = ['F16', 'Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M'] as const;
export type MergeType = (typeof mergeTypes)[number];

export const exportFormatInfoSchema = z.object({
  id: z.enum(exportFormats),
  label: z.string(),
  /** One line: what the export is and which tools load it. */
  explain: z.string(),
  /** 'file': one file `<name>.<ext>` in outDir; 'folder': a folder `<name>/` in outDir. */
  layout: z.enum(['file', 'folder']),
});
export type ExportFormatInfo = z.infer<typeof exportFormatInfoSchema>;

export const exportRequestSchema = z.object({
  runId: z.string().min(1),
  /** A kept checkpoint's step; without it, the run's final adapter. */
  checkpoint: z.number().int().nonnegative().optional(),
  format: z.enum(exportFormats),
  /** The folder to write into (absolute; created when missing). */
  outDir: z.string().min(1, 'outDir must name a folder'),
  /**
   * The file stem (adapter) or folder name (packages). Refused when it could leave outDir
   * (separators, `..`, absolute, NUL, reserved device names). Default: derived from the run.
   */
  name: z.string().min(1).optional(),
  /** Replace an existing file/folder of that name; without it an existing one is a CONFLICT. */
  overwrite: z.boolean().default(false),
  /** PEFT tensor precision (default f32). */
  precision: z.enum(['f32', 'f16']).default('f32'),
  /** Merged model type (format 'merged'; ignored by the others). */
  type: z.enum(mergeTypes).default('Q4_K_M'),
  /**
   * Merged model: write LM Studio's models-folder layout, `<outDir>/<publisher>/<name>/<name>-<type>.gguf`
   * (outDir is then LM Studio's models folder). Ignored by the other formats.
   */
  lmstudio: z.boolean().default(false),
  /** The publisher folder of the LM Studio layout (checked like a name; default "overnight"). */
  publisher: z.string().min(1).optional(),
  /** Chosen by the caller to follow `export.progress` and to `export.cancel`. */
  jobId: z.string().min(1).max(100).optional(),
});
export type ExportRequest = z.output<typeof exportRequestSchema>;

export const exportCheckSchema = z.object({
  /** What was checked, e.g. "greedy output equals the run's adapter on 2 probe prompts". */
  name: z.string(),
  ok: z.boolean(),
  /** The evidence (the outputs compared, the largest difference, the missing token...). */
  detail: z.string(),
});
export type ExportCheck = z.infer<typeof exportCheckSchema>;

export const exportResultSchema = z.object({
  jobId: z.string(),
  runId: z.string(),
  format: z.enum(exportFormats),
  /** The step of the checkpoint exported; null for the run's final adapter. */
  checkpoint: z.number().int().nullable(),
  /** The adapter the export was made from (the run's own). */
  source: z.string(),
  /** The file or folder written (absolute). */
  path: z.string(),
  files: z.array(z.object({ path: z.string(), bytes: z.number().int().nonnegative() })),
  verification: z.object({ ok: z.boolean(), checks: z.array(exportCheckSchema) }),
  /** Copyable command lines (llama.cpp, Ollama, Python) for what was written. */
  commands: z.array(z.object({ label: z.string(), command: z.string() })),
});
export type ExportResult = z.infer<typeof exportResultSchema>;

export const exportPhases = ['source', 'write', 'verify', 'done'] as const;
export const exportProgressSchema = z.object({
  jobId: z.string(),
  runId: z.string(),
  format: z.enum(exportFormats),
  phase: z.enum(exportPhases),
  /** Bytes written so far in 'write'; 0 otherwise. */
  done: z.number().nonnegative(),
  total: z.number().nonnegative(),
  message: z.string(),
});
export type ExportProgress = z.infer<typeof exportProgressSchema>;

export const exportMethods = {
  'export.formats': method(
    z.object({}),
    z.array(exportFormatInfoSchema),
    'The export formats with what each one is for.',
  ),
  'export.run': method(
    exportRequestSchema,
    exportResultSchema,
    "Export a run's final adapter or a kept checkpoint in one format, verify it, and return the files and command lines.",
  ),
  'export.cancel': method(
    z.object({ jobId: z.string().min(1) }),
    z.object({ cancelled: z.boolean() }),
    'Cancel a running export (nothing is left under its final name).',
  ),
} as const;

export const exportEvents = {
  'export.progress': event(exportProgressSchema, 'An export moved on (phase, bytes written).'),
} as const;
