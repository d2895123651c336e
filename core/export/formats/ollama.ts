/**
 * Ollama package: a folder `<name>/` with the adapter GGUF (as the adapter format writes it), a
 * Modelfile and a README with the `ollama create` / `ollama run` commands.
 * Modelfile: `FROM` the base GGUF's absolute path; `ADAPTER ./<name>.gguf`; no TEMPLATE when the
 * GGUF has a chat template (Ollama reads it from the file, so chat is formatted as the run
 * trained), `TEMPLATE {{ .Prompt }}` when it has none (raw text, as a text run trains); one
 * `PARAMETER stop` per end-of-turn / end-of-sequence token of the model (its eos/eot/eom ids and
 * the end-of-turn markers its template uses, when they are in its vocabulary); sampling from the
 * model's `general.sampling.*` keys, else the app's chat defaults (contract samplingDefaults).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { OvernightError, samplingDefaults, type ExportCheck } from '../../../contract/index.ts';
import { AtomicFolder, inside, writeFileAtomic } from '../files.ts';
import {
  shellQuote,
  type ExportContext,
  type ExportFormatModule,
  type Written,
} from '../format.ts';
import { kv, kvNumber, kvString, type GgufHeader } from '../gguf.ts';
import { adapterFileChecks, baseName, llamaCppCommands, writeAdapterGguf } from './adapter.ts';

/** End-of-turn markers of the common chat templates (used only when template and vocab have them). */
const TURN_ENDS = ['<|im_end|>', '<|eot_id|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '</s>'];

/** The stop strings: the model's eos/eot/eom tokens, then its template's end-of-turn markers. */
export function stopTokens(base: GgufHeader): string[] {
  const vocab = kv(base, 'tokenizer.ggml.tokens');
  const tokens = Array.isArray(vocab) ? (vocab as string[]) : [];
  const out = new Set<string>();
  for (const key of ['eos', 'eot', 'eom']) {
    const id = kvNumber(base, `tokenizer.ggml.${key}_token_id`);
    const t = id === null ? undefined : tokens[id];
    if (t) out.add(t);
  }
  const template = kvString(base, 'tokenizer.chat_template') ?? '';
  const inVocab = new Set(tokens);
  for (const t of TURN_ENDS) if (template.includes(t) && inVocab.has(t)) out.add(t);
  return [...out];
}

/** Sampling parameters (Ollama names) and where they came from. */
export function sampling(base: GgufHeader): {
  params: [string, number][];
  from: 'model' | 'defaults';
} {
  const keys: [string, string][] = [
    ['temperature', 'general.sampling.temp'],
    ['top_k', 'general.sampling.top_k'],
    ['top_p', 'general.sampling.top_p'],
    ['min_p', 'general.sampling.min_p'],
    ['repeat_penalty', 'general.sampling.penalty_repeat'],
    ['repeat_last_n', 'general.sampling.penalty_last_n'],
  ];
  const params = keys
    .map(([name, key]) => [name, kvNumber(base, key)] as const)
    .filter((x): x is [string, number] => x[1] !== null);
  if (params.length > 0) return { params, from: 'model' };
  const d = samplingDefaults;
  return {
    params: [
      ['temperature', d.temperature],
      ['top_k', d.topK],
      ['top_p', d.topP],
      ['min_p', d.minP],
      ['repeat_penalty', d.repeatPenalty],
    ],
    from: 'defaults',
  };
}

/** A Modelfile value in double quotes (Ollama's parser reads \" and \\ inside). */
const quoted = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

export function modelfile(ctx: ExportContext, adapterFile: string): string {
  const hasTemplate = kvString(ctx.base, 'tokenizer.chat_template') !== null;
  const s = sampling(ctx.base);
  const lines = [
    `# ${ctx.run.name}: LoRA adapter on ${baseName(ctx)} (Overnight run ${ctx.run.id}, step ${ctx.checkpoint ?? ctx.run.step})`,
    `FROM ${ctx.model.path}`,
    `ADAPTER ./${adapterFile}`,
  ];
  if (hasTemplate) lines.push("# TEMPLATE: the chat template in the base model's GGUF");
  else
    lines.push(
      '# The base model has no chat template: prompts are passed as plain text',
      'TEMPLATE {{ .Prompt }}',
    );
  for (const t of stopTokens(ctx.base)) lines.push(`PARAMETER stop ${quoted(t)}`);
  lines.push(
    s.from === 'model'
      ? "# sampling: from the model's metadata (general.sampling.*)"
      : "# sampling: Overnight's chat defaults (the model's metadata has none)",
  );
  for (const [k, v] of s.params) lines.push(`PARAMETER ${k} ${v}`);
  return lines.join('\n') + '\n';
}

/** An Ollama model name: lower case letters, digits, '.', '_', '-'. */
export function ollamaName(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[-._]+/, '') || 'adapter'
  );
}

function readme(ctx: ExportContext, name: string, dir: string): string {
  const n = ollamaName(name);
  return [
    `# ${ctx.run.name}`,
    '',
    `A LoRA adapter for ${baseName(ctx)}, trained with Overnight (run ${ctx.run.id}, ${ctx.checkpoint === null ? 'final adapter' : `checkpoint at step ${ctx.checkpoint}`}).`,
    '',
    '## Ollama',
    '',
    '```sh',
    `cd ${shellQuote(dir)}`,
    `ollama create ${n} -f Modelfile`,
    `ollama run ${n}`,
    '```',
    '',
    `The Modelfile's FROM names the base model file on this machine (${ctx.model.path}); on another machine, change it to where the base GGUF is there.`,
    '',
    '## llama.cpp',
    '',
    '```sh',
    ...llamaCppCommands(ctx, join(dir, `${name}.gguf`)).map((c) => c.command),
    '```',
    '',
  ].join('\n');
}

/** The Modelfile's instructions (comments dropped; a quoted value unquoted). */
export function parseModelfile(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Modelfile line "${line}" is not "INSTRUCTION value"`);
    out.push({ op: m[1]!.toUpperCase(), args: m[2]! });
  }
  return out;
}

function unquote(s: string): string {
  const m = /^"((?:[^"\\]|\\.)*)"$/.exec(s);
  return m ? m[1]!.replace(/\\(.)/g, '$1') : s;
}

export function modelfileChecks(ctx: ExportContext, dir: string): ExportCheck {
  const problems: string[] = [];
  let facts = '';
  try {
    const ins = parseModelfile(readFileSync(join(dir, 'Modelfile'), 'utf8'));
    const from = ins.filter((i) => i.op === 'FROM');
    const adapters = ins.filter((i) => i.op === 'ADAPTER');
    const stops = ins
      .filter((i) => i.op === 'PARAMETER' && i.args.startsWith('stop '))
      .map((i) => unquote(i.args.slice(5).trim()));
    if (from.length !== 1) problems.push(`${from.length} FROM lines (expected 1)`);
    const base = from[0]?.args ?? '';
    if (!isAbsolute(base)) problems.push(`FROM ${base} is not an absolute path`);
    else if (!existsSync(base) || !statSync(base).isFile())
      problems.push(`FROM ${base} does not exist`);
    if (adapters.length !== 1) problems.push(`${adapters.length} ADAPTER lines (expected 1)`);
    const ad = adapters[0]?.args ?? '';
    const adPath = resolve(dir, ad);
    if (!adPath.startsWith(resolve(dir) + '/'))
      problems.push(`ADAPTER ${ad} is outside the package`);
    else if (!existsSync(adPath)) problems.push(`ADAPTER ${ad} does not exist in the package`);
    const want = stopTokens(ctx.base);
    if (want.length === 0) problems.push('the model names no end-of-turn or end-of-sequence token');
    for (const t of want) if (!stops.includes(t)) problems.push(`no PARAMETER stop for ${t}`);
    facts = `FROM ${base}; ADAPTER ${ad}; stop ${stops.map((s) => JSON.stringify(s)).join(', ')}`;
  } catch (err) {
    problems.push((err as Error).message);
  }
  return {
    name: 'the Modelfile parses: FROM names the base GGUF, ADAPTER the packaged adapter, a stop for each end-of-turn token',
    ok: problems.length === 0,
    detail: problems.length === 0 ? facts : problems.join('; '),
  };
}

export const ollamaFormat: ExportFormatModule = {
  info: {
    id: 'ollama',
    label: 'Ollama package',
    explain:
      'A folder with the adapter, a Modelfile (FROM the base GGUF, ADAPTER, stop tokens, sampling) and a README with the ollama create command.',
    layout: 'folder',
  },
  target: (outDir, name) => inside(outDir, name),
  async write(ctx): Promise<Written> {
    const path = this.target(ctx.outDir, ctx.name);
    const folder = new AtomicFolder(path);
    try {
      const adapterFile = `${ctx.name}.gguf`;
      const bytes = writeAdapterGguf(ctx, folder.path(adapterFile), false);
      const mf = modelfile(ctx, adapterFile);
      writeFileAtomic(folder.path('Modelfile'), mf, false);
      const rd = readme(ctx, ctx.name, path);
      writeFileAtomic(folder.path('README.md'), rd, false);
      if (ctx.signal.aborted)
        throw new OvernightError('CANCELLED', `the export was cancelled; ${path} was not written`);
      folder.commit(ctx.overwrite);
      return {
        path,
        adapterGguf: join(path, adapterFile),
        files: [
          { path: join(path, adapterFile), bytes },
          { path: join(path, 'Modelfile'), bytes: Buffer.byteLength(mf) },
          { path: join(path, 'README.md'), bytes: Buffer.byteLength(rd) },
        ],
      };
    } catch (err) {
      folder.abort();
      throw err;
    }
  },
  async verify(ctx, w) {
    return [
      modelfileChecks(ctx, w.path),
      ...adapterFileChecks(ctx, w.adapterGguf!),
      await ctx.probes.sameGreedy(ctx.source, w.adapterGguf!, "the package's adapter"),
    ];
  },
  commands(ctx, w) {
    const n = ollamaName(ctx.name);
    return [
      {
        label: 'Ollama: create the model',
        command: `cd ${shellQuote(w.path)} && ollama create ${n} -f Modelfile`,
      },
      { label: 'Ollama: chat', command: `ollama run ${n}` },
      ...llamaCppCommands(ctx, w.adapterGguf!),
    ];
  },
};
