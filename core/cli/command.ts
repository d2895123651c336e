/**
 * A CLI command: its words (`['models', 'add']`), positional arguments, options (util.parseArgs
 * config) and a `run` that calls the engine through the dispatcher. A domain exports an array of
 * these from `core/cli/commands/<domain>.ts`; `commands/index.ts` lists them all.
 */
import type { ParseArgsConfig } from 'node:util';
import type { MethodInput, MethodName, MethodOutput } from '../../contract/index.ts';
import type { Engine } from '../engine.ts';

export type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export interface CliContext {
  /** --json: print machine-readable JSON on stdout. */
  json: boolean;
  dataDir: string;
  io: CliIo;
  /** The engine for this process (created on first use, closed when the command ends). */
  engine(): Engine;
  /** Calls a contract method through the engine's dispatcher (validates like every transport). */
  call<M extends MethodName>(method: M, params: MethodInput<M>): Promise<MethodOutput<M>>;
  /** Prints `value` as JSON with --json, else the human text. */
  print(value: unknown, human: () => string): void;
}

export interface CliCommand {
  words: string[];
  /** Positional arguments, e.g. ['<file>']; a trailing '?' marks an optional one ('[name]'). */
  args?: string[];
  options?: OptionsConfig;
  summary: string;
  /** Returns when the command is done (serve: when the server stops). */
  run(
    ctx: CliContext,
    args: string[],
    values: Record<string, string | boolean | undefined>,
  ): Promise<void>;
}

/** A mistake in how the command was typed: exit code 2 and the usage line. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}
