/**
 * `overnight chat --model <id|file> [--adapter <run id|adapter file>]`: an interactive chat in
 * the terminal through the compare domain (the prompt is rendered exactly as the training data
 * was; the conversation is saved like one from the Compare page). Reads one message per line
 * from stdin, streams the answer to stdout. Commands: /regen, /clear, /exit (or end of input).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { OvernightError, type CompareAnswer, type VariantInput } from '../../../contract/index.ts';
import { UsageError, type CliCommand, type CliContext } from '../command.ts';

function num(values: Record<string, unknown>, key: string): number | undefined {
  const v = values[key];
  if (typeof v !== 'string') return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${key} must be a number`);
  return n;
}

async function resolveModel(ctx: CliContext, model: string): Promise<string> {
  if (model.endsWith('.gguf') && existsSync(model)) {
    return (await ctx.call('models.add', { path: resolve(model) })).id;
  }
  return (await ctx.call('models.show', { id: model })).id;
}

async function resolveAdapter(ctx: CliContext, adapter: string): Promise<VariantInput> {
  try {
    const { run } = await ctx.call('runs.show', { id: adapter });
    return { kind: 'run', runId: run.id };
  } catch (err) {
    if (!(err instanceof OvernightError) || err.code !== 'NOT_FOUND') throw err;
  }
  if (existsSync(adapter)) return { kind: 'file', path: resolve(adapter) };
  throw new OvernightError(
    'NOT_FOUND',
    `--adapter ${adapter}: no run with that id and no such adapter file`,
  );
}

export const chatCommands: CliCommand[] = [
  {
    words: ['chat'],
    options: {
      model: { type: 'string' },
      adapter: { type: 'string' },
      scale: { type: 'string' },
      system: { type: 'string' },
      temperature: { type: 'string' },
      'max-tokens': { type: 'string' },
      seed: { type: 'string' },
      cpu: { type: 'boolean' },
    },
    summary:
      'Chat with a model (and an adapter: a run id or a file) in the terminal, streaming; /regen, /clear, /exit.',
    async run(ctx, _args, values) {
      if (typeof values.model !== 'string')
        throw new UsageError('--model <id|file.gguf> is needed');
      const modelId = await resolveModel(ctx, values.model);
      const scale = num(values, 'scale');
      let variant: VariantInput = { kind: 'base' };
      if (typeof values.adapter === 'string') {
        variant = await resolveAdapter(ctx, values.adapter);
        if (scale !== undefined && variant.kind !== 'base') variant = { ...variant, scale };
      }
      const temperature = num(values, 'temperature');
      const maxTokens = num(values, 'max-tokens');
      const seed = num(values, 'seed');
      const conv = await ctx.call('compare.create', {
        modelId,
        variants: [variant],
        systemPrompt: typeof values.system === 'string' ? values.system : '',
        sampling: {
          ...(temperature !== undefined ? { temperature } : {}),
          ...(maxTokens !== undefined ? { maxTokens } : {}),
          ...(seed !== undefined ? { seed } : {}),
        },
        device: values.cpu === true ? 'cpu' : 'auto',
        title: `chat: ${variant.kind === 'base' ? 'base' : String(values.adapter)}`,
      });
      const engine = ctx.engine();
      const { io } = ctx;
      const off = engine.events.subscribe('compare.token', (t) => {
        if (t.id === conv.id && !ctx.json) io.stdout(t.delta);
      });
      const answers: CompareAnswer[] = [];
      const offA = engine.events.subscribe('compare.answer', (a) => {
        if (a.id === conv.id) answers.push(a.answer);
      });
      const tty = process.stdin.isTTY === true;
      const rl = createInterface({ input: process.stdin, terminal: false });
      const prompt = () => {
        if (tty) io.stderr('> ');
      };
      io.stderr(
        `chatting with ${conv.columns[0]!.label} (conversation ${conv.id}); /exit to end\n`,
      );
      let offeredCpu = false;
      const answer = async (fn: () => Promise<unknown>): Promise<void> => {
        answers.length = 0;
        try {
          await fn();
        } catch (err) {
          if (err instanceof OvernightError && err.code === 'OUT_OF_MEMORY' && !offeredCpu) {
            offeredCpu = true;
            io.stderr(`${err.message}\nUsing the CPU for this chat.\n`);
            await ctx.call('compare.update', { id: conv.id, device: 'cpu' });
            return answer(fn);
          }
          throw err;
        }
        await engine.compare.idle();
        const a = answers.at(-1);
        if (!a) return;
        if (ctx.json) io.stdout(`${JSON.stringify(a)}\n`);
        else if (a.finish === 'error') io.stderr(`error: ${a.error ?? 'the answer failed'}\n`);
        else
          io.stderr(
            `\n[${a.tokens} tokens, ${a.tokensPerSecond.toFixed(1)} tokens/s${a.finish === 'end' ? '' : `, ${a.finish}`}]\n`,
          );
      };
      try {
        prompt();
        for await (const raw of rl) {
          const line = raw.trim();
          if (line === '/exit' || line === '/quit') break;
          if (line === '') {
            prompt();
            continue;
          }
          if (line === '/clear') {
            await ctx.call('compare.clear', { id: conv.id });
            io.stderr('(cleared)\n');
          } else if (line === '/regen') {
            await answer(() => ctx.call('compare.regenerate', { id: conv.id }));
          } else {
            await answer(() => ctx.call('compare.send', { id: conv.id, text: raw }));
          }
          prompt();
        }
      } finally {
        rl.close();
        off();
        offA();
      }
    },
  },
];
