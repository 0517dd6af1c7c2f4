// Does training work, not just run: a LoRA on a random tiny model learns to copy strings it never saw, from
// exact match 0 to nearly all; QLoRA on the same model quantized to NF4 lowers its loss too.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { train } from '../recipes/train.ts';
import { COPY_DATASET, copyRows, tinyBase, writeJsonl, writeRecipe } from './train-fixtures.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-learns-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const recipe = {
  base_model: './tiny',
  lora_r: 8,
  lora_alpha: 16,
  lora_target_linear: true,
  datasets: [{ path: 'copy.jsonl', ...COPY_DATASET }],
  val_set_size: 40, // held-out strings: never trained on, generated from at the end
  sequence_len: 128,
  sample_packing: true,
  micro_batch_size: 8,
  learning_rate: 1e-2,
  warmup_steps: 5,
  logging_steps: 5,
  seed: 1,
};

beforeAll(async () => {
  await tinyBase(path.join(tmp, 'tiny'));
  writeJsonl(path.join(tmp, 'copy.jsonl'), copyRows(360)); // 360 of the 512 strings over a..h
});

it('a LoRA learns to copy held-out strings: greedy exact match 0 before, >= 0.8 after (fixed seed)', async () => {
  const { file, recipe: r } = writeRecipe(
    tmp,
    { ...recipe, adapter: 'lora', max_steps: 70, output_dir: './lora', eval: { max_new_tokens: 12 } },
    'lora.yaml',
  );
  const out = await train(r, { recipeFile: file });
  const [base, tuned] = out.eval!.models;
  expect(out.eval!.items).toHaveLength(40);
  expect(base.metrics.exact_match).toBeLessThanOrEqual(0.05);
  expect(tuned.metrics.exact_match).toBeGreaterThanOrEqual(0.8);
  expect(out.finalEvalLoss!).toBeLessThan(out.history[0].loss! / 5);
  // the eval ran through the recipe's eval section: its files beside the adapter, its numbers in the model card
  expect(existsSync(path.join(out.outputDir, 'eval', 'summary.json'))).toBe(true);
  expect(readFileSync(path.join(out.adapterDir, 'README.md'), 'utf8')).toMatch(/exact_match/);
}, 240_000);

it('QLoRA (NF4 base) lowers the loss on the same task over 20 steps', async () => {
  const { file, recipe: r } = writeRecipe(
    tmp,
    { ...recipe, adapter: 'qlora', max_steps: 20, output_dir: './qlora' },
    'qlora.yaml',
  );
  expect(r.load_in_4bit).toBe(true);
  const out = await train(r, { recipeFile: file });
  const losses = out.history.map((h) => h.loss!);
  expect(losses).toHaveLength(4);
  expect(losses[3]).toBeLessThan(losses[0] * 0.6);
  expect(out.finalEvalLoss!).toBeLessThan(losses[0] * 0.6);
}, 120_000);
