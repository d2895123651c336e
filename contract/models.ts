/** The model library: GGUF files on the engine's machine that the user added. */
import { z } from 'zod';
import { event, method } from './define.ts';

export const modelIdSchema = z.string().min(1);

export const chatTemplateInfoSchema = z.object({
  present: z.boolean(),
  /** Family name detected from the template text: chatml, llama3, mistral, phi3, gemma, ... or 'unknown'. */
  family: z.string().nullable(),
});

export const modelInfoSchema = z.object({
  id: modelIdSchema,
  name: z.string(),
  path: z.string(),
  architecture: z.string(),
  /** Total parameter count computed from the tensor shapes. */
  parameterCount: z.number().int().nonnegative(),
  /** llama.cpp file type name, e.g. "Q4_K_M", "F16". */
  fileType: z.string(),
  /** Quantization types of the tensors and how many tensors of each, e.g. { Q4_K: 193, Q6_K: 33, F32: 65 }. */
  tensorTypes: z.record(z.string(), z.number().int()),
  contextLength: z.number().int().nonnegative(),
  layers: z.number().int().nonnegative(),
  embeddingSize: z.number().int().nonnegative(),
  vocabSize: z.number().int().nonnegative(),
  chatTemplate: chatTemplateInfoSchema,
  fileSize: z.number().int().nonnegative(),
  /** Content fingerprint: sha256 over the header, metadata and sampled tensor data, hex. */
  fingerprint: z.string(),
  /** Whether the native trainer supports this architecture + types, and why not. */
  trainable: z.object({ ok: z.boolean(), reason: z.string().nullable() }),
  addedAt: z.string(),
  /** False when the file has moved or been deleted since it was added. */
  fileExists: z.boolean(),
});
export type ModelInfo = z.infer<typeof modelInfoSchema>;

export const modelsMethods = {
  'models.add': method(
    z.object({ path: z.string().min(1), name: z.string().min(1).optional() }),
    modelInfoSchema,
    'Add a local .gguf file to the library (reads its metadata; never copies or changes the file).',
  ),
  'models.list': method(z.object({}), z.array(modelInfoSchema), 'List the models in the library.'),
  'models.show': method(z.object({ id: modelIdSchema }), modelInfoSchema, 'Show one model.'),
  'models.remove': method(
    z.object({ id: modelIdSchema }),
    z.object({ removed: z.boolean() }),
    'Remove a model from the library (the file on disk is kept).',
  ),
} as const;

export const modelsEvents = {
  'models.changed': event(z.object({ ids: z.array(modelIdSchema) }), 'The model list changed.'),
} as const;
