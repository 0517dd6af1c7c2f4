// The real `ft` bin in a child process, as a user runs it; async, so the test process stays responsive meanwhile.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const FT_BIN = fileURLToPath(new URL('../cli/ft.js', import.meta.url));

export interface FtRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ft ...args`; `env` replaces the environment when given (else it is inherited); killed after `timeoutMs`. */
export function runFt(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<FtRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [FT_BIN, ...args],
      { env: opts.env, timeout: opts.timeoutMs ?? 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** runFt for a run that must succeed: resolves with its output on exit 0, rejects naming the exit code and stderr. */
export async function runFtOk(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<FtRun> {
  const r = await runFt(args, opts);
  if (r.code !== 0) throw new Error(`ft ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}
