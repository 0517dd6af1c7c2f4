// Options and start-up shared by every command.
import { statSync } from 'node:fs';
import type { Argv } from 'yargs';
import { BACKENDS, initBackend, type BackendChoice, type BackendInfo } from '../engine/backend.ts';
import { FtError } from '../util/errors.ts';
import { setQuiet } from '../util/progress.ts';

export interface GlobalArgs {
  backend: BackendChoice;
  /** unset: the recipe's num_threads (train), else every core this process may use */
  threads?: number;
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
    .option('threads', {
      type: 'number',
      describe: 'threads the products run on (default: every core this process may use)',
      global: true,
    })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress bars or chatter', global: true });
}

/** Applies --quiet, starts the backend and says which one runs (on stderr, so stdout stays the command's output). */
export async function startRun(args: GlobalArgs): Promise<BackendInfo> {
  setQuiet(args.quiet);
  if (args.threads !== undefined && !(Number.isInteger(args.threads) && args.threads >= 1))
    throw new FtError(`--threads ${args.threads}: expected a whole number of at least 1`);
  const info = await initBackend(args.backend, args.threads);
  if (!args.quiet)
    process.stderr.write(
      `ft: backend ${info.name} (${info.pkg}), ${info.threads} thread${info.threads > 1 ? 's' : ''}${productsOn(info)}\n`,
    );
  return info;
}

/**
 * What wasm's products run on: OpenBLAS when loaded; else, on Linux unless FT_BLAS=off, how to get it (training ran
 * 3.5-4.5x faster per core on it here, README "OpenBLAS").
 */
function productsOn(info: BackendInfo): string {
  if (info.blas) return `, products on ${info.blas}`;
  if (info.name !== 'wasm' || process.platform !== 'linux' || process.env.FT_BLAS === 'off') return '';
  return ", products on ft's wasm GEMM (OpenBLAS trains faster: apt-get install libopenblas0-pthread)";
}

/** A model folder named by `flag` must exist and be a folder: said as such, before any of its files is looked for. */
export function requireModelDir(dir: string, flag = '--model'): void {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (!st) throw new FtError(`${flag} ${dir}: no such folder (expected a Hugging Face model folder)`);
  if (!st.isDirectory()) throw new FtError(`${flag} ${dir}: is a file, expected a model folder`);
}
