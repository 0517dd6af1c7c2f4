// `ft train` on every core against one thread: the threaded wasm build (engine/wasm-threads.ts) must leave training
// as it was. The same recipe trained with --threads 1 and --threads 2 gives the same adapter and losses to 1e-5, and a
// run checkpointed on 2 threads and resumed on 1 ends where the straight run does.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPeftAdapter } from '../adapters/peft.ts';
import { readMetrics } from '../util/metrics-log.ts';
import { COPY_DATASET, copyRows, tinyBase, writeJsonl, writeRecipe } from './train-fixtures.ts';
import { runFt } from './run-ft.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-train-threads-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ft = (args: string[]) => runFt(args, { env: { PATH: process.env.PATH, HOME: tmp }, timeoutMs: 180_000 });

let recipeFile = '';
beforeAll(async () => {
  await tinyBase(path.join(tmp, 'tiny'));
  writeJsonl(path.join(tmp, 'copy.jsonl'), copyRows(120));
  recipeFile = writeRecipe(tmp, {
    base_model: './tiny',
    adapter: 'qlora',
    lora_target_linear: true,
    lora_dropout: 0.1, // dropout masks come from the seed, not from the thread that draws them
    datasets: [{ path: 'copy.jsonl', ...COPY_DATASET }],
    sequence_len: 64,
    sample_packing: true,
    micro_batch_size: 4,
    gradient_accumulation_steps: 2,
    max_steps: 8,
    save_steps: 4,
    learning_rate: 1e-2,
    logging_steps: 1,
  }).file;
});

/** Trains into output_dir `out` with `args`; returns the adapter's tensors and the logged losses. */
async function run(out: string, ...args: string[]) {
  const r = await ft(['train', recipeFile, '--output_dir', out, ...args]);
  expect(r.code, r.stderr).toBe(0);
  const dir = path.join(tmp, out);
  return {
    stderr: r.stderr,
    tensors: (await readPeftAdapter(path.join(dir, 'adapter'))).tensors,
    losses: readMetrics(path.join(dir, 'metrics.jsonl'))
      .filter((m) => m.loss !== undefined)
      .map((m) => m.loss as number),
  };
}

function expectSameAdapter(a: Map<string, { data: Float32Array }>, b: Map<string, { data: Float32Array }>): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [name, t] of a) {
    const u = b.get(name)!.data;
    let worst = 0;
    for (let i = 0; i < t.data.length; i++) worst = Math.max(worst, Math.abs(t.data[i] - u[i]));
    expect(worst, name).toBeLessThanOrEqual(1e-5);
  }
}

describe('ft train --threads', () => {
  it('2 threads train the same adapter as 1, and a resume may change the thread count', async () => {
    const one = await run('one', '--threads', '1');
    const two = await run('two', '--threads', '2');
    expect(one.stderr).toMatch(/ft: backend wasm \(@tensorflow\/tfjs-backend-wasm\), 1 thread(, products on .*)?\n/);
    expect(two.stderr).toMatch(/ft: backend wasm \(@tensorflow\/tfjs-backend-wasm\), 2 threads(, products on .*)?\n/);
    expect(one.losses).toHaveLength(8);
    expect(two.losses.length).toBe(8);
    for (let i = 0; i < 8; i++) expect(Math.abs(two.losses[i] - one.losses[i])).toBeLessThanOrEqual(1e-5);
    expectSameAdapter(one.tensors, two.tensors);

    // the 2-thread run as if stopped after its step-4 checkpoint, finished on 1 thread (num_threads may change)
    cpSync(path.join(tmp, 'two'), path.join(tmp, 'switch'), { recursive: true });
    for (const later of ['checkpoint-8', 'adapter']) rmSync(path.join(tmp, 'switch', later), { recursive: true });
    const resumed = await run('switch', '--resume', '--threads', '1', '--quiet');
    expect(resumed.stderr).toBe('');
    expectSameAdapter(one.tensors, resumed.tensors);
  }, 300_000);
});
