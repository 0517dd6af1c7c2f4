// Every `ft` subcommand, one module each.
import type { CommandModule } from 'yargs';
import { dataCommand } from './data.ts';
import { downloadCommand } from './download.ts';
import { evalCommand } from './eval.ts';
import { exportCommand } from './export.ts';
import { generateCommand } from './generate.ts';
import { initModelCommand } from './init-model.ts';
import { memoryCommand } from './memory.ts';
import { pushCommand } from './push.ts';
import { trainCommand } from './train.ts';

export const commands: CommandModule<any, any>[] = [
  initModelCommand,
  pushCommand,
  downloadCommand,
  generateCommand,
  trainCommand,
  exportCommand,
  dataCommand,
  memoryCommand,
  evalCommand,
];
