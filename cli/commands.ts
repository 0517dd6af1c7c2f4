// Every `ft` subcommand, one module each.
import type { CommandModule } from 'yargs';
import { pushCommand } from './push.ts';

export const commands: CommandModule<any, any>[] = [pushCommand];
