// A benchmark's child process: its output echoed as it comes, but the `@result {json}` line it reports through.
import { spawn } from 'node:child_process';

/**
 * Runs a command, echoing its output but its `@result {json}` line (stderr lines cut to 300 characters: a wasm abort
 * prints the whole minified module); resolves with its stdout lines, the stderr lines and the exit code.
 */
export function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; lines: string[]; errors: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      out += text;
      for (const line of text.split('\n')) if (line && !line.startsWith('@result ')) console.log(`  ${line}`);
    });
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      const errors = err
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => (l.length > 300 ? l.slice(0, 300) + ' …' : l));
      for (const line of errors) console.error(`  ${line}`);
      resolve({ code: code ?? 1, lines: out.split('\n'), errors });
    });
  });
}
