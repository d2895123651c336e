/** Every CLI command. A new domain adds its `<domain>Commands` array here (one line). */
import type { CliCommand } from '../command.ts';
import { chatCommands } from './chat.ts';
import { evalCommands } from './eval.ts';
import { exportCommands } from './export.ts';
import { datasetsCommands } from './datasets.ts';
import { hubCommands } from './hub.ts';
import { modelsCommands } from './models.ts';
import { runsCommands } from './runs.ts';
import { serveCommands } from './serve.ts';
import { systemCommands } from './system.ts';

export const commands: CliCommand[] = [
  ...serveCommands,
  ...modelsCommands,
  ...hubCommands,
  ...datasetsCommands,
  ...runsCommands,
  ...chatCommands,
  ...evalCommands,
  ...exportCommands,
  ...systemCommands,
];
