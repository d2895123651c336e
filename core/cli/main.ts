/**
 * The `overnight` command line. Every command goes through the engine's dispatcher in-process,
 * exactly like the web and Electron shells, so inputs are validated the same way.
 *
 *   overnight [--json] [--data-dir D] <command> [args] [options]
 *
 * Exit codes: 0 ok, 1 the operation failed, 2 the command was typed wrong.
 * Failures print one line, `error: <message>`, on stderr.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { OvernightError } from '../../contract/index.ts';
import { resolveDataDir } from '../data-dir.ts';
import { createEngine, type Engine } from '../engine.ts';
import { appVersion } from '../version.ts';
import {
  UsageError,
  type CliCommand,
  type CliContext,
  type CliIo,
  type OptionsConfig,
} from './command.ts';
import { commands as allCommands } from './commands/index.ts';

const GLOBAL_OPTIONS: OptionsConfig = {
  json: { type: 'boolean' },
  'data-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
};

const defaultIo: CliIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
};

export function usageOf(cmd: CliCommand): string {
  const opts = Object.entries(cmd.options ?? {}).map(([k, o]) =>
    o.type === 'string' ? `[--${k} <${k}>]` : `[--${k}]`,
  );
  return ['overnight', ...cmd.words, ...(cmd.args ?? []), ...opts].join(' ');
}

export function helpText(commands: readonly CliCommand[] = allCommands): string {
  const lines = commands.map((c) => [usageOf(c).slice('overnight '.length), c.summary] as const);
  const w = Math.max(...lines.map(([u]) => u.length));
  return [
    `Overnight ${appVersion()}: fine-tune an LLM with LoRA on a GGUF model.`,
    '',
    'Usage: overnight [--json] [--data-dir <dir>] <command> ...',
    '',
    'Commands:',
    ...lines.map(([u, s]) => `  ${u.padEnd(w)}  ${s}`),
    '',
    'Global options:',
    '  --json            machine-readable JSON on stdout',
    '  --data-dir <dir>  data folder (default: $OVERNIGHT_DATA_DIR, else the OS default)',
    '  -h, --help        this help',
    '',
  ].join('\n');
}

function findCommand(
  commands: readonly CliCommand[],
  positionals: string[],
): CliCommand | undefined {
  let best: CliCommand | undefined;
  for (const c of commands) {
    if (c.words.every((w, i) => positionals[i] === w) && c.words.length > (best?.words.length ?? 0))
      best = c;
  }
  return best;
}

export async function main(
  argv: string[],
  io: CliIo = defaultIo,
  commands: readonly CliCommand[] = allCommands,
): Promise<number> {
  let engine: Engine | null = null;
  try {
    // Pass 1, lenient: find the command words among the positionals.
    const allOptions: OptionsConfig = Object.assign(
      {},
      ...commands.map((c) => c.options ?? {}),
      GLOBAL_OPTIONS,
    );
    const loose = parseArgs({
      args: argv,
      options: allOptions,
      strict: false,
      allowPositionals: true,
    });
    if (loose.values.version) {
      io.stdout(`${appVersion()}\n`);
      return 0;
    }
    const cmd = findCommand(commands, loose.positionals);
    if (!cmd) {
      if (loose.positionals.length === 0) {
        io[loose.values.help ? 'stdout' : 'stderr'](helpText(commands));
        return loose.values.help ? 0 : 2;
      }
      const group = commands.filter((c) => c.words[0] === loose.positionals[0]);
      if (group.length > 0) {
        const sub = loose.positionals[1];
        throw new UsageError(
          `${sub ? `unknown command "${loose.positionals[0]} ${sub}"` : `"${loose.positionals[0]}" needs a subcommand`}; ` +
            `expected one of: ${group.map((c) => c.words.slice(1).join(' ')).join(', ')}`,
        );
      }
      throw new UsageError(
        `unknown command "${loose.positionals[0]}"; run overnight --help for the list`,
      );
    }

    // Pass 2, strict: the command's own options plus the global ones.
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({
        args: argv,
        options: { ...cmd.options, ...GLOBAL_OPTIONS },
        strict: true,
        allowPositionals: true,
      });
    } catch (err) {
      throw new UsageError((err as Error).message.split('\n')[0]!, usageOf(cmd));
    }
    const values = parsed.values as Record<string, string | boolean | undefined>;
    if (values.help) {
      io.stdout(`Usage: ${usageOf(cmd)}\n${cmd.summary}\n`);
      return 0;
    }
    const args = parsed.positionals.slice(cmd.words.length);
    const spec = cmd.args ?? [];
    const required = spec.filter((a) => a.startsWith('<'));
    if (args.length < required.length) {
      throw new UsageError(`missing ${required.slice(args.length).join(' ')}`, usageOf(cmd));
    }
    if (args.length > spec.length) {
      throw new UsageError(`unexpected argument "${args[spec.length]}"`, usageOf(cmd));
    }

    const json = values.json === true;
    const dataDir = resolveDataDir({
      flag: typeof values['data-dir'] === 'string' ? values['data-dir'] : undefined,
    });
    const getEngine = (): Engine => (engine ??= createEngine({ dataDir }));
    const ctx: CliContext = {
      json,
      dataDir,
      io,
      engine: getEngine,
      call: (method, params) => getEngine().dispatcher.call(method, params, { transport: 'cli' }),
      print(value, human) {
        io.stdout(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
      },
    };
    await cmd.run(ctx, args, values);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`error: ${err.message}\n`);
      if (err.usage) io.stderr(`usage: ${err.usage}\n`);
      return 2;
    }
    const message =
      err instanceof OvernightError || err instanceof Error ? err.message : String(err);
    io.stderr(`error: ${oneLine(message)}\n`);
    return 1;
  } finally {
    await (engine as Engine | null)?.close();
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

// Run when executed directly (bin/overnight.mjs imports `main` and calls it itself).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
