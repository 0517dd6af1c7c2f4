// `npm run bench`: runs each bench module below in its own process (each starts its own tfjs backend),
// streams what it prints, and writes bench/results/<module>.json with its figures (from bench/report.ts)
// or, for modules that only print, its output lines. Add a module by adding its file name here.
// Run: npm run bench [-- name ...]   (names pick a subset, e.g. `npm run bench -- quant`)
// bench/train.ts (training/generation tokens/s, MFU, memory, PyTorch peer) takes ~15 minutes of the run; its configs are
// picked with FT_BENCH_CONFIGS=tiny,stories15M. Standalone, not run here (minutes each): bench/data.ts, bench/prepared.ts, bench/lora.ts, bench/optimizer.ts.
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../util/fs.ts';

const BENCHES = ['quant.ts', 'model-io.ts', 'generate.ts', 'train.ts'];

const here = path.dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const selected = wanted.length ? BENCHES.filter((b) => wanted.includes(path.basename(b, '.ts'))) : BENCHES;
if (wanted.length && selected.length !== wanted.length) {
  console.error(
    `bench: unknown module in ${wanted.join(', ')}: expected some of ${BENCHES.map((b) => path.basename(b, '.ts')).join(', ')}`,
  );
  process.exit(1);
}

function runModule(file: string, figuresPath: string): Promise<{ code: number; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, file)], {
      env: { ...process.env, FT_BENCH_OUT: figuresPath },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    let rest = '';
    child.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop()!;
      lines.push(...parts);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, lines: rest ? [...lines, rest] : lines }));
  });
}

let failed = 0;
for (const file of selected) {
  const name = path.basename(file, '.ts');
  const figuresPath = path.join(here, 'results', `.${name}.figures.json`);
  console.log(`\n== bench/${file}`);
  const t0 = performance.now();
  const { code, lines } = await runModule(file, figuresPath);
  const seconds = (performance.now() - t0) / 1000;
  const figures = await readFile(figuresPath, 'utf8').then(JSON.parse, () => null);
  await rm(figuresPath, { force: true });
  const result = {
    module: `bench/${file}`,
    date: new Date().toISOString(),
    node: process.version,
    seconds,
    exitCode: code,
    figures,
    output: figures ? undefined : lines,
  };
  await writeFileAtomic(path.join(here, 'results', `${name}.json`), JSON.stringify(result, null, 2) + '\n');
  if (code !== 0) failed++;
}
if (failed) {
  console.error(`bench: ${failed} module(s) failed`);
  process.exitCode = 1;
}
