// Options and start-up shared by every command.
import type { Argv } from 'yargs';
import { BACKENDS, initBackend, type BackendChoice, type BackendInfo } from '../engine/backend.ts';
import { setQuiet } from '../util/progress.ts';

export interface GlobalArgs {
  backend: BackendChoice;
  quiet: boolean;
}

export function globalOptions<T>(y: Argv<T>) {
  return y
    .option('backend', {
      choices: ['auto', ...BACKENDS] as BackendChoice[],
      default: 'auto' as BackendChoice,
      describe: 'tfjs backend (auto: tensorflow, then wasm, then cpu)',
      global: true,
    })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress bars or chatter', global: true });
}

/** Applies --quiet, starts the backend and says which one runs (on stderr, so stdout stays the command's output). */
export async function startRun(args: GlobalArgs): Promise<BackendInfo> {
  setQuiet(args.quiet);
  const info = await initBackend(args.backend);
  if (!args.quiet) process.stderr.write(`ft: backend ${info.name} (${info.pkg})\n`);
  return info;
}
