/**
 * `overnight eval --run <id> [--prompts file] [--json]`: answer a prompt set with the base and
 * the run's adapter (progress on stderr), then print the answers and the scores: exact-match /
 * contains against references, perplexity on the validation split and the general-text
 * forgetting check. The evaluation is saved with the run (blind votes happen on the Evaluate page).
 */
import { resolve } from 'node:path';
import type { EvalSet } from '../../../contract/index.ts';
import { leftVariant } from '../../eval/stats.ts';
import { UsageError, type CliCommand } from '../command.ts';
import { keyValues } from '../format.ts';

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

export function describeScores(s: EvalSet): string {
  const [a, b] = s.labels;
  const rows: [string, string][] = [
    ['evaluation', s.id],
    ['prompts', `${s.answered}/${s.total} answered (${s.source}${s.file ? `: ${s.file}` : ''})`],
    ['A', a],
    ['B', b],
  ];
  if (s.references) {
    rows.push([
      'exact match',
      `A ${pct(s.references.exact[0])}, B ${pct(s.references.exact[1])} (${s.references.items} with references)`,
    ]);
    rows.push([
      'contains',
      `A ${pct(s.references.contains[0])}, B ${pct(s.references.contains[1])}`,
    ]);
  }
  if (s.perplexity)
    rows.push([
      'perplexity (validation)',
      `A ${s.perplexity.perplexity[0].toFixed(3)}, B ${s.perplexity.perplexity[1].toFixed(3)}`,
    ]);
  if (s.general) {
    const c = s.general.change;
    rows.push([
      'general ability',
      `${c < 0 ? '-' : '+'}${Math.abs(c * 100).toFixed(1)}% (general-text perplexity A ${s.general.perplexity[0].toFixed(2)}, B ${s.general.perplexity[1].toFixed(2)})`,
    ]);
  }
  return keyValues(rows);
}

export const evalCommands: CliCommand[] = [
  {
    words: ['eval'],
    options: {
      run: { type: 'string' },
      prompts: { type: 'string' },
      'max-tokens': { type: 'string' },
      limit: { type: 'string' },
      cpu: { type: 'boolean' },
      'skip-perplexity': { type: 'boolean' },
    },
    summary:
      "Answer a prompt set (default: the run's validation split) with the base and the run's adapter; print answers and scores.",
    async run(ctx, _args, values) {
      if (typeof values.run !== 'string') throw new UsageError('--run <id> is needed');
      const int = (key: string): number | undefined => {
        const v = values[key];
        if (typeof v !== 'string') return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1)
          throw new UsageError(`--${key} must be a positive integer`);
        return n;
      };
      const maxTokens = int('max-tokens');
      const limit = int('limit');
      const engine = ctx.engine();
      let id = '';
      const off = engine.events.subscribe('eval.progress', (s) => {
        if (s.id === id && !ctx.json) ctx.io.stderr(`\ranswered ${s.answered}/${s.total}`);
      });
      let device: 'auto' | 'cpu' = values.cpu === true ? 'cpu' : 'auto';
      if (device === 'auto') {
        // One GPU, one budget: where the chat model would not fit on the GPU, say so and use the CPU.
        const { run } = await ctx.call('runs.show', { id: values.run });
        const mem = await ctx.call('compare.memory', { modelId: run.modelId, columns: 2 });
        if (mem.gpu && !mem.fitsGpu) {
          ctx.io.stderr(`${mem.message}\nUsing the CPU for this evaluation.\n`);
          device = 'cpu';
        }
      }
      let set: EvalSet;
      try {
        set = await ctx.call('eval.create', {
          runId: values.run,
          ...(typeof values.prompts === 'string' ? { prompts: resolve(values.prompts) } : {}),
          sampling: { temperature: 0, maxTokens: maxTokens ?? 256 },
          device,
          ...(limit !== undefined ? { limit } : {}),
        });
        id = set.id;
        await engine.evals.idle();
      } finally {
        off();
      }
      if (!ctx.json) ctx.io.stderr('\n');
      set = await ctx.call('eval.show', { id }).then((r) => r.set);
      if (set.state === 'failed') throw new Error(`the evaluation failed: ${set.error ?? ''}`);
      if (values['skip-perplexity'] !== true) set = await ctx.call('eval.perplexity', { id });
      const { items } = await ctx.call('eval.show', { id });
      const answers = items.map((i) => {
        const left = leftVariant(set.orderSeed, i.index);
        return {
          prompt: i.prompt,
          reference: i.reference,
          a: left === 0 ? i.left : i.right,
          b: left === 0 ? i.right : i.left,
        };
      });
      ctx.print({ set, answers }, () =>
        [
          ...answers.map(
            (x, k) =>
              `#${k + 1} ${x.prompt}\n  A: ${x.a ?? ''}\n  B: ${x.b ?? ''}${x.reference !== null ? `\n  reference: ${x.reference}` : ''}`,
          ),
          '',
          describeScores(set),
        ].join('\n'),
      );
    },
  },
];
