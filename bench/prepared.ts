// Prepared data (data/prepared.ts) against the streaming pipeline, each case in a fresh process (peak RSS is its own):
// 1. the data work of the default run (recipes/alpaca-tiny.yaml): count an epoch, 60 micro-batches over the epochs,
//    4 validation passes, and a resume at batch 8 of epoch 2; streamed, prepared from scratch, and reusing the folder.
// 2. generated Alpaca-style rows (bench/data.ts gen) at FT_BENCH_PREPARED_ROWS (default 50000,200000): build the
//    prepared folder on the worker threads, then reuse it (open, count, one epoch of packed batches, a resume
//    seek to the last batch); wall and CPU time (all threads) and peak RSS, which stays flat when memory does.
// Run: npx tsx bench/prepared.ts
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset, newStats, type Dataset } from '../data/pipeline.ts';
import { prepareDataset } from '../data/prepared.ts';
import { DataRecipeSchema, type DataRecipe } from '../data/spec.ts';
import { seedTokenizer } from '../data/testing.ts';
import type { DataTokenizer } from '../data/types.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { DEFAULT_RECIPE, loadRecipe } from '../recipes/recipe.ts';
import { resolveBaseModel } from '../recipes/setup.ts';
import { report, type Figures } from './report.ts';

const [mode, how, file, dir] = process.argv.slice(2);

/** Wall seconds, CPU seconds (every thread of the process) and peak RSS of the work so far. */
function measure(t0: number, cpu0: NodeJS.CpuUsage) {
  const cpu = process.cpuUsage(cpu0);
  return {
    seconds: (performance.now() - t0) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

async function open(
  how: string,
  recipe: DataRecipe,
  tok: DataTokenizer,
  baseDir: string,
  dir: string,
): Promise<Dataset> {
  return how === 'stream' ? loadDataset(recipe, tok, baseDir) : prepareDataset(recipe, tok, baseDir, { dir });
}

/** Iterates micro-batches of epoch `epoch` from `startBatch` on; returns how many, stopping after `limit`. */
async function drain(ds: Dataset, req: Parameters<Dataset['batches']>[0], limit = Infinity): Promise<number> {
  let n = 0;
  for await (const _ of ds.batches(req)) if (++n >= limit) break;
  return n;
}

/** Size of the one prepared dataset under a dataset_prepared_path folder. */
async function folderMb(store: string): Promise<number> {
  const [key] = (await readdir(store)).filter((d) => !d.startsWith('.'));
  const files = await readdir(path.join(store, key));
  const sizes = await Promise.all(files.map(async (f) => (await stat(path.join(store, key, f))).size));
  return sizes.reduce((a, b) => a + b, 0) / 2 ** 20;
}

if (mode === 'default') {
  const recipe = loadRecipe(DEFAULT_RECIPE);
  const tok = await loadTokenizer(await resolveBaseModel(recipe, () => {}));
  const [t0, cpu0] = [performance.now(), process.cpuUsage()];
  const ds = await open(how, recipe, tok, path.dirname(DEFAULT_RECIPE), dir);
  const perEpoch = await ds.batchCount('train', newStats());
  const total = recipe.max_steps! * recipe.gradient_accumulation_steps;
  for (let epoch = 0, done = 0; done < total; epoch++) done += await drain(ds, { epoch }, total - done);
  for (let k = 0; k < total / recipe.eval_steps!; k++) await drain(ds, { part: 'validation' });
  const t1 = performance.now();
  await drain(ds, { epoch: 2, startBatch: 8 }, 1);
  const resumeMs = performance.now() - t1;
  await ds.close();
  console.log(JSON.stringify({ perEpoch, ...measure(t0, cpu0), resumeMs }));
} else if (mode === 'generated') {
  const recipe = DataRecipeSchema.parse({
    datasets: [{ path: file }],
    sequence_len: 512,
    sample_packing: true,
    micro_batch_size: 8,
    val_set_size: 0.05,
  });
  const tok = seedTokenizer(); // trains a small BPE: not part of the data work
  const [t0, cpu0] = [performance.now(), process.cpuUsage()];
  const ds = await open(how, recipe, tok, '.', dir);
  const opened = measure(t0, cpu0);
  const perEpoch = await ds.batchCount('train', newStats());
  const batches = await drain(ds, { epoch: 1 });
  const t1 = performance.now();
  await drain(ds, { epoch: 1, startBatch: perEpoch - 1 });
  const resumeMs = performance.now() - t1;
  await ds.close();
  console.log(JSON.stringify({ perEpoch, batches, openSeconds: opened.seconds, ...measure(t0, cpu0), resumeMs }));
} else {
  const self = fileURLToPath(import.meta.url);
  const child = (script: string, ...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (r.status !== 0) throw new Error(`${path.basename(script)} ${args.join(' ')} failed`);
    return r.stdout.trim() ? JSON.parse(r.stdout.trim().split('\n').at(-1)!) : null;
  };
  const work = await mkdtemp(path.join(tmpdir(), 'ft-bench-prepared-'));
  const figures: Figures = {};
  const put = (at: string, r: { seconds: number; cpuSeconds: number; peakRssMb: number; resumeMs: number }) => {
    figures[`${at}: wall (s)`] = r.seconds;
    figures[`${at}: CPU (s)`] = r.cpuSeconds;
    figures[`${at}: peak RSS (MB)`] = r.peakRssMb;
    figures[`${at}: resume seek (ms)`] = r.resumeMs;
  };
  try {
    const store = path.join(work, 'default');
    for (const how of ['stream', 'build', 'reuse'])
      put(`default run data, ${how}`, child(self, 'default', how, '', store));
    const sizes = (process.env.FT_BENCH_PREPARED_ROWS ?? '50000,200000').split(',').map(Number);
    for (const n of sizes) {
      const f = path.join(work, `gen-${n}.arrow`);
      child(fileURLToPath(new URL('./data.ts', import.meta.url)), 'gen', f, String(n));
      const k = `${n / 1000}k rows`;
      const out = path.join(work, `prepared-${n}`);
      const built = child(self, 'generated', 'build', f, out);
      figures[`${k}: prepare on ${availableParallelism()} threads (s)`] = built.openSeconds;
      put(`${k}, build + one epoch`, built);
      const reused = child(self, 'generated', 'reuse', f, out);
      figures[`${k}: reuse, open (s)`] = reused.openSeconds;
      put(`${k}, reuse + one epoch`, reused);
      figures[`${k}: prepared folder (MB)`] = await folderMb(out);
      if (n === sizes[0]) put(`${k}, streaming: count + one epoch`, child(self, 'generated', 'stream', f, out));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  await report(figures);
}
