/**
 * Compare: chat with a model's base weights and its adapters side by side. One loaded model,
 * one context per column (variant) with that column's adapter; every prompt is rendered with
 * the same chat template code the dataset masks use, so a column sees exactly the formatting
 * its adapter was trained on. Conversations are kept in the store.
 */
import { z } from 'zod';
import { event, method } from './define.ts';

export const compareIdSchema = z.string().min(1);

/** One column: the base model, a run's final adapter, a kept checkpoint, or an adapter file. */
export const variantSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('base') }),
  z.object({
    kind: z.literal('run'),
    runId: z.string().min(1),
    scale: z.number().min(0).max(4).default(1),
  }),
  z.object({
    kind: z.literal('checkpoint'),
    runId: z.string().min(1),
    step: z.number().int().nonnegative(),
    scale: z.number().min(0).max(4).default(1),
  }),
  z.object({
    kind: z.literal('file'),
    path: z.string().min(1),
    scale: z.number().min(0).max(4).default(1),
  }),
]);
export type Variant = z.output<typeof variantSchema>;
export type VariantInput = z.input<typeof variantSchema>;

/** Sampling controls shared by every column (validators without defaults: patches use them). */
const samplingFields = {
  /** 0 = greedy. */
  temperature: z.number().min(0).max(5),
  topP: z.number().min(0).max(1),
  /** 0 = off. */
  topK: z.number().int().min(0).max(1000),
  minP: z.number().min(0).max(1),
  /** 1 = off. */
  repeatPenalty: z.number().min(1).max(3),
  maxTokens: z.number().int().min(1).max(8192),
  /** The same seed in every column, so the columns differ only by their adapters. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1),
};

export const samplingSchema = z.object({
  temperature: samplingFields.temperature.default(0.7),
  topP: samplingFields.topP.default(0.95),
  topK: samplingFields.topK.default(40),
  minP: samplingFields.minP.default(0.05),
  repeatPenalty: samplingFields.repeatPenalty.default(1.1),
  maxTokens: samplingFields.maxTokens.default(512),
  seed: samplingFields.seed.default(42),
});
/** A change to some controls: unset fields stay as they are (zod 4's partial() would default them). */
export const samplingPatchSchema = z.object(samplingFields).partial();
export type Sampling = z.output<typeof samplingSchema>;
export const samplingDefaults: Sampling = samplingSchema.parse({});

export const chatDevices = ['auto', 'gpu', 'cpu'] as const;

export const compareColumnSchema = z.object({
  index: z.number().int().nonnegative(),
  variant: variantSchema,
  /** "base", "<run name>", "<run name> @ step N", or the adapter file name; "(x0.5)" for a scale. */
  label: z.string(),
});
export type CompareColumn = z.infer<typeof compareColumnSchema>;

export const finishReasons = ['end', 'max-tokens', 'stopped', 'error'] as const;

export const compareAnswerSchema = z.object({
  column: z.number().int().nonnegative(),
  content: z.string(),
  tokens: z.number().int().nonnegative(),
  tokensPerSecond: z.number().nonnegative(),
  /** null while generating. */
  finish: z.enum(finishReasons).nullable(),
  error: z.string().nullable(),
});
export type CompareAnswer = z.infer<typeof compareAnswerSchema>;

export const compareTurnSchema = z.object({
  index: z.number().int().nonnegative(),
  user: z.string(),
  answers: z.array(compareAnswerSchema),
});
export type CompareTurn = z.infer<typeof compareTurnSchema>;

export const conversationSummarySchema = z.object({
  id: compareIdSchema,
  title: z.string(),
  modelId: z.string(),
  columns: z.array(compareColumnSchema),
  turns: z.number().int().nonnegative(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type ConversationSummary = z.infer<typeof conversationSummarySchema>;

export const conversationSchema = conversationSummarySchema.extend({
  systemPrompt: z.string(),
  sampling: samplingSchema,
  device: z.enum(chatDevices),
  turnList: z.array(compareTurnSchema),
  /** True while the columns answer the last turn. */
  generating: z.boolean(),
});
export type Conversation = z.infer<typeof conversationSchema>;

export const chatMemorySchema = z.object({
  /** Estimated bytes to hold the model for chat: weights + one KV cache per column + compute. */
  needBytes: z.number().nonnegative(),
  /** The GPU the chat model would use, or null when there is none (chat runs on the CPU). */
  gpu: z.string().nullable(),
  gpuFreeBytes: z.number().nonnegative().nullable(),
  /** A run is training now (it holds the GPU). */
  trainingRun: z.string().nullable(),
  fitsGpu: z.boolean(),
  /** Where `auto` would load the model. */
  recommended: z.enum(['gpu', 'cpu']),
  /** Plain words for the UI, e.g. "chat needs 5.1 GB; the GPU has 2.0 GB free while ... trains". */
  message: z.string(),
});
export type ChatMemory = z.infer<typeof chatMemorySchema>;

export const variantOptionSchema = z.object({
  variant: variantSchema,
  label: z.string(),
  /** Checkpoints not exported yet are exported to an adapter file when first used. */
  needsExport: z.boolean(),
});
export type VariantOption = z.infer<typeof variantOptionSchema>;

const byId = z.object({ id: compareIdSchema });

export const compareMethods = {
  'compare.variants': method(
    z.object({ modelId: z.string().min(1) }),
    z.array(variantOptionSchema),
    "What a model can be compared as: the base, each completed run's adapter, each kept checkpoint.",
  ),
  'compare.memory': method(
    z.object({ modelId: z.string().min(1), columns: z.number().int().min(1).max(3).default(2) }),
    chatMemorySchema,
    'Estimate the memory chat needs and whether it fits on the GPU next to a training run.',
  ),
  'compare.create': method(
    z.object({
      modelId: z.string().min(1),
      variants: z.array(variantSchema).min(1).max(3),
      systemPrompt: z.string().max(20000).default(''),
      sampling: samplingSchema.default(samplingDefaults),
      device: z.enum(chatDevices).default('auto'),
      title: z.string().max(200).optional(),
    }),
    conversationSchema,
    'Start a conversation with up to three columns (the model is loaded on the first message).',
  ),
  'compare.list': method(z.object({}), z.array(conversationSummarySchema), 'Saved conversations.'),
  'compare.show': method(byId, conversationSchema, 'One conversation with every turn.'),
  'compare.send': method(
    z.object({ id: compareIdSchema, text: z.string().min(1, 'the message is empty').max(100000) }),
    conversationSchema,
    'Add a user message; every column answers it (streamed as compare.token events).',
  ),
  'compare.stop': method(byId, conversationSchema, 'Stop the answers being generated.'),
  'compare.regenerate': method(byId, conversationSchema, 'Answer the last message again.'),
  'compare.editLast': method(
    z.object({ id: compareIdSchema, text: z.string().min(1, 'the message is empty').max(100000) }),
    conversationSchema,
    'Replace the last user message and answer it again.',
  ),
  'compare.clear': method(
    byId,
    conversationSchema,
    'Remove every turn (columns and settings stay).',
  ),
  'compare.update': method(
    z.object({
      id: compareIdSchema,
      systemPrompt: z.string().max(20000).optional(),
      sampling: samplingPatchSchema.optional(),
      title: z.string().min(1).max(200).optional(),
      /** Where the model is loaded for this conversation (e.g. 'cpu' when the GPU is full). */
      device: z.enum(chatDevices).optional(),
    }),
    conversationSchema,
    "Change a conversation's system prompt, sampling, title or device (applies to the next answer).",
  ),
  'compare.delete': method(byId, z.object({ deleted: z.boolean() }), 'Delete a conversation.'),
  'compare.markdown': method(
    byId,
    z.object({ markdown: z.string(), fileName: z.string() }),
    'The conversation as Markdown (settings, then each turn with every column).',
  ),
  'compare.unload': method(
    z.object({}),
    z.object({ unloaded: z.boolean() }),
    'Free the chat model.',
  ),
} as const;

export const compareEvents = {
  'compare.token': event(
    z.object({
      id: compareIdSchema,
      turn: z.number().int().nonnegative(),
      column: z.number().int().nonnegative(),
      /** Text added since the last event. */
      delta: z.string(),
      tokens: z.number().int().nonnegative(),
      tokensPerSecond: z.number().nonnegative(),
    }),
    'Streamed text of one column (a few events a second at most per column).',
  ),
  'compare.answer': event(
    z.object({
      id: compareIdSchema,
      turn: z.number().int().nonnegative(),
      answer: compareAnswerSchema,
    }),
    'A column finished its answer (end of turn, max tokens, stopped or failed).',
  ),
  'compare.changed': event(
    z.object({ id: compareIdSchema }),
    'A conversation was created, changed or deleted.',
  ),
} as const;
