import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FtError } from '../util/errors.ts';
import { globalOptions } from './common.ts';
import { commands } from './commands.ts';

let cli = globalOptions(yargs(hideBin(process.argv)).scriptName('ft'));
for (const c of commands) cli = cli.command(c as never);

try {
  await cli
    .demandCommand(1, 'name a command')
    .strict()
    .help()
    .fail((msg, err) => {
      throw err ?? new FtError(msg);
    })
    .parseAsync();
} catch (e) {
  if (e instanceof FtError) {
    process.stderr.write(`ft: ${e.message}\n`);
  } else {
    process.stderr.write(`ft: internal error: ${(e as Error)?.stack ?? e}\n`);
  }
  process.exitCode = 1;
}
