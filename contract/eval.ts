/**
 * Batch evaluation of a run: a prompt set (the run's validation split, or a JSONL/CSV file with
 * a prompt and an optional reference answer) answered by two variants (A: base by default, B:
 * the run's adapter), a blind A/B vote over the answers in seeded random left/right order, the
 * win rate with its 95% Wilson interval, exact-match / contains scores against references, and
 * perplexity (validation split, and a general-text sample for the forgetting check).
 */
import { z } from 'zod';
import { samplingSchema, variantSchema } from './compare.ts';
import { event, method } from './define.ts';

export const evalIdSchema = z.string().min(1);
export const evalStates = ['answering', 'paused', 'completed', 'failed'] as const;
export const voteChoices = ['left', 'right', 'tie', 'both-bad'] as const;
export type VoteChoice = (typeof voteChoices)[number];

export const winRateSchema = z.object({
  /** B's wins over the decisive votes (A or B won); ties and "both bad" are counted apart. */
  rate: z.number().min(0).max(1).nullable(),
  low: z.number().min(0).max(1).nullable(),
  high: z.number().min(0).max(1).nullable(),
  winsA: z.number().int().nonnegative(),
  winsB: z.number().int().nonnegative(),
  ties: z.number().int().nonnegative(),
  bothBad: z.number().int().nonnegative(),
});
export type WinRate = z.infer<typeof winRateSchema>;

export const referenceScoresSchema = z.object({
  /** Items that have a reference answer (and both answers). */
  items: z.number().int().nonnegative(),
  /** Share of answers equal to the reference (trimmed, case-insensitive), per variant [A, B]. */
  exact: z.tuple([z.number(), z.number()]),
  /** Share of answers containing the reference (case-insensitive), per variant [A, B]. */
  contains: z.tuple([z.number(), z.number()]),
});

export const perplexitySchema = z.object({
  /** Mean negative log-likelihood per scored token (the trainer's loss), per variant [A, B]. */
  loss: z.tuple([z.number(), z.number()]),
  perplexity: z.tuple([z.number(), z.number()]),
  tokens: z.number().int().nonnegative(),
});
export type Perplexity = z.infer<typeof perplexitySchema>;

export const evalSetSchema = z.object({
  id: evalIdSchema,
  runId: z.string(),
  modelId: z.string(),
  source: z.enum(['validation', 'file']),
  file: z.string().nullable(),
  variants: z.tuple([variantSchema, variantSchema]),
  /** Shown only after reveal (or in the scores); the vote screen never names them. */
  labels: z.tuple([z.string(), z.string()]),
  sampling: samplingSchema,
  /** Seeds the left/right order of each item. */
  orderSeed: z.number().int().nonnegative(),
  state: z.enum(evalStates),
  error: z.string().nullable(),
  total: z.number().int().nonnegative(),
  answered: z.number().int().nonnegative(),
  voted: z.number().int().nonnegative(),
  revealed: z.boolean(),
  winRate: winRateSchema,
  references: referenceScoresSchema.nullable(),
  /** On the run's validation split (null until computed, or without a validation split). */
  perplexity: perplexitySchema.nullable(),
  /** On the general-text sample the project ships: the forgetting check. */
  general: perplexitySchema
    .extend({
      /** ppl_A / ppl_B - 1: "general ability: -x%" when negative (B finds general text less likely). */ change:
        z.number(),
    })
    .nullable(),
  createdAt: z.string(),
});
export type EvalSet = z.infer<typeof evalSetSchema>;

/** One item as the blind vote shows it: no variant names until revealed. */
export const evalItemSchema = z.object({
  index: z.number().int().nonnegative(),
  prompt: z.string(),
  reference: z.string().nullable(),
  left: z.string().nullable(),
  right: z.string().nullable(),
  vote: z.enum(voteChoices).nullable(),
  /** After reveal: which variant is on the left (0 = A, 1 = B). Null before. */
  leftVariant: z.union([z.literal(0), z.literal(1)]).nullable(),
});
export type EvalItem = z.infer<typeof evalItemSchema>;

const byId = z.object({ id: evalIdSchema });

export const evalMethods = {
  'eval.create': method(
    z.object({
      runId: z.string().min(1),
      /** A .jsonl ({"prompt", "reference"?} per line) or .csv (header prompt[,reference]); default: the run's validation split. */
      prompts: z.string().min(1).optional(),
      /** [A, B]; default [base, the run's adapter]. */
      variants: z.tuple([variantSchema, variantSchema]).optional(),
      sampling: samplingSchema.default({
        ...samplingSchema.parse({}),
        temperature: 0,
        maxTokens: 256,
      }),
      orderSeed: z
        .number()
        .int()
        .min(0)
        .max(2 ** 31 - 1)
        .optional(),
      device: z.enum(['auto', 'gpu', 'cpu']).default('auto'),
      limit: z.number().int().min(1).max(10000).default(200),
    }),
    evalSetSchema,
    'Create an evaluation of a run over a prompt set and start answering it.',
  ),
  'eval.list': method(
    z.object({ runId: z.string().optional() }),
    z.array(evalSetSchema),
    'Evaluations, newest first.',
  ),
  'eval.show': method(
    byId,
    z.object({ set: evalSetSchema, items: z.array(evalItemSchema) }),
    'An evaluation with its items in blind left/right order.',
  ),
  'eval.resume': method(byId, evalSetSchema, 'Continue answering where it stopped.'),
  'eval.cancel': method(byId, evalSetSchema, 'Stop answering (resume later).'),
  'eval.vote': method(
    z.object({
      id: evalIdSchema,
      index: z.number().int().nonnegative(),
      vote: z.enum(voteChoices),
    }),
    evalSetSchema,
    'Vote on one item: left, right, tie or both bad.',
  ),
  'eval.reveal': method(byId, evalSetSchema, 'Show which variant answered on which side.'),
  'eval.perplexity': method(
    byId,
    evalSetSchema,
    "Perplexity of both variants on the run's validation split and on the general-text sample.",
  ),
  'eval.delete': method(byId, z.object({ deleted: z.boolean() }), 'Delete an evaluation.'),
} as const;

export const evalEvents = {
  'eval.progress': event(evalSetSchema, 'An evaluation answered an item or changed state.'),
} as const;
