// Inputs for the training tests: a tiny base model on disk, a synthetic copy task, recipe files.
// NOTE from the perf engineer (measured 02:30): with the UNTIED tiny preset, LoRA barely learns copying (EM ~0-0.4
// after 150 steps at r 8-32). With tie_word_embeddings true (rewrite config.json + randomTensors(config, 0, 0.15)),
// "Say the last word." over 12 single-token words (time day way list word number name good food one two new; 3 distinct
// words in, the last out; 240 rows, val_set_size 40, custom format "Q: {instruction} {input}\nA: {output}",
// sequence_len 32, micro_batch 8, lora r 8 alpha 16 all-linear, lr 1e-2, warmup 5, 150 steps) reaches held-out
// exact_match 0.95 (0.775 at 120 steps), ~30 s. Script: .prof/learn.ts (TIED=1 MODE=last W=12 VAL=40 STD=0.15 SEQ=32).
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { synthCorpus } from '../data/synth.ts';
import { initModel } from '../model/init.ts';
import { loadRecipe } from '../recipes/recipe.ts';
import type { Recipe } from '../recipes/schema.ts';
import { Rng } from '../util/rng.ts';

/**
 * ft's tiny preset (BPE tokenizer on ft's synth tasks) at `dir` with init std `std`: at transformers' 0.02 the
 * frozen lm_head's logits are too flat for LoRA to fit anything in a few dozen steps; 0.15 learns.
 */
export async function tinyBase(dir: string, std = 0.15, seed = 0): Promise<string> {
  await initModel(dir, { seed, initStd: std, corpus: synthCorpus() });
  return dir;
}

export interface AlpacaRow {
  instruction: string;
  input: string;
  output: string;
}

/** `n` distinct rows "Copy the input." `c,a,h` -> `c,a,h` over the letters a..h (512 possible strings). */
export function copyRows(n: number, seed = 3): AlpacaRow[] {
  const rng = new Rng(seed);
  const letters = 'abcdefgh';
  const rows = new Map<string, AlpacaRow>();
  while (rows.size < n) {
    const input = Array.from({ length: 3 }, () => letters[Math.floor(rng.next() * letters.length)]).join(',');
    rows.set(input, { instruction: 'Copy the input.', input, output: input });
  }
  return [...rows.values()];
}

export function writeJsonl(file: string, rows: object[]): void {
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

/** Writes `fields` as recipe.yaml (or `name`) in `dir` and loads it; paths in it are relative to `dir`. */
export function writeRecipe(
  dir: string,
  fields: Record<string, unknown>,
  name = 'recipe.yaml',
): { file: string; recipe: Recipe } {
  const file = path.join(dir, name);
  writeFileSync(file, stringify(fields));
  return { file, recipe: loadRecipe(file) };
}

/** The copy task as a short custom prompt (the Alpaca preamble would triple the tokens per example). */
export const COPY_DATASET = { type: 'custom', format: '{instruction} {input} =' } as const;
