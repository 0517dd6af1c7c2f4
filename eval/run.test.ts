// End to end: a LoRA trained by the training loop on a synthetic task beats its base in `ft eval`; the recipe hook
// evaluates the validation split with the same loss the training loop logs.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runEvalCommand, type EvalArgs } from '../cli/eval.ts';
import { readConfig } from '../model/config.ts';
import { synthCorpus } from '../data/synth.ts';
import { initModel, randomTensors } from '../model/init.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import { train, type TrainResult } from '../recipes/train.ts';
import { loadRecipe } from '../recipes/recipe.ts';
import type { Recipe } from '../recipes/schema.ts';
import { Rng } from '../util/rng.ts';
import { evaluateRecipe } from '../recipes/eval.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-eval-run-'));
const recipeFile = path.join(tmp, 'recipe.yaml');
const heldFile = path.join(tmp, 'held.jsonl');
const trainFile = path.join(tmp, 'train.jsonl');
const metricFile = path.resolve(import.meta.dirname, '../test/fixtures/eval/answer-length.ts');
let recipe: Recipe;
let trained: TrainResult;

/** "Name the color." of an object sentence -> "The answer is <color>."; held-out rows are other sentences. */
function syntheticRows(): { instruction: string; input: string; output: string; task: string }[] {
  const rng = new Rng(7);
  const rows = new Map<string, { instruction: string; input: string; output: string; task: string }>();
  for (const thing of ['car', 'house', 'ball', 'shirt', 'door', 'bike', 'hat', 'cup']) {
    for (const color of ['red', 'green', 'blue', 'yellow']) {
      for (let k = 0; k < 3; k++) {
        const input = `The ${thing} ${10 + Math.floor(rng.next() * 90)} is ${color}.`;
        rows.set(input, { instruction: 'Name the color.', input, output: `The answer is ${color}.`, task: color });
      }
    }
  }
  return [...rows.values()];
}

beforeAll(async () => {
  // ft's tiny preset at init std 0.02 has logits too flat to fit anything in a few steps; std 0.15 learns in ~40
  const model = path.join(tmp, 'tiny');
  const texts = syntheticRows().flatMap((r) => [r.instruction, r.input, r.output]);
  await initModel(model, { seed: 0, corpus: [...synthCorpus(), ...texts] }); // the template and this test's words as tokens
  await writeSafetensors(path.join(model, 'model.safetensors'), randomTensors(await readConfig(model), 0, 0.15));
  const rows = syntheticRows();
  const jsonl = (rs: object[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';
  writeFileSync(trainFile, jsonl(rows.filter((_, i) => i % 5 !== 0)));
  writeFileSync(heldFile, jsonl(rows.filter((_, i) => i % 5 === 0)));
  writeFileSync(
    recipeFile,
    [
      'base_model: ./tiny',
      'adapter: lora',
      'lora_r: 8',
      'lora_alpha: 16',
      'lora_target_linear: true',
      'datasets: [{path: train.jsonl, type: alpaca}]',
      'val_set_size: 0.15',
      'sequence_len: 128',
      'micro_batch_size: 8',
      'max_steps: 40',
      'learning_rate: 3.0e-2',
      'warmup_steps: 4',
      'logging_steps: 10',
      'output_dir: ./out',
      'seed: 1',
      'eval: {max_new_tokens: 8}',
    ].join('\n') + '\n',
  );
  recipe = loadRecipe(recipeFile);
  trained = await train(recipe, { recipeFile });
}, 240_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const args = (over: Partial<EvalArgs>): EvalArgs => ({
  backend: 'wasm',
  quiet: true,
  model: path.join(tmp, 'tiny'),
  adapter: [trained.adapterDir],
  data: heldFile,
  dataType: 'alpaca',
  base: true,
  maxNewTokens: 8,
  temperature: 0,
  topK: 0,
  topP: 1,
  seed: 0,
  batchSize: 8,
  allowOverlap: false,
  loadIn4bit: false,
  reportExamples: 3,
  ...over,
});

it('a LoRA-trained tiny model beats its base on held-out rows of a synthetic task', async () => {
  const out = path.join(tmp, 'eval-held');
  const lines: string[] = [];
  const r = await runEvalCommand(args({ out, recipe: recipeFile, metric: metricFile }), (l) => lines.push(l));
  const [base, tuned] = r.models;
  expect([base.name, tuned.name]).toEqual(['base', 'out/adapter']);
  expect(tuned.metrics.exact_match).toBeGreaterThan(base.metrics.exact_match + 0.3);
  expect(tuned.metrics.rougeL).toBeGreaterThan(base.metrics.rougeL + 0.5);
  expect(tuned.metrics.f1).toBeGreaterThan(base.metrics.f1 + 0.5);
  expect(tuned.loss.loss).toBeLessThan(base.loss.loss / 2);
  expect(tuned.loss.perplexity).toBeCloseTo(Math.exp(tuned.loss.loss), 10);
  expect(r.overlap).toEqual({ trainedOn: recipeFile, overlapping: 0 });
  // the user metric is scored per example and averaged
  expect(tuned.metrics.ends_with_period).toBeGreaterThan(0.5);
  expect(Object.keys(tuned.scores[0]).sort()).toEqual([
    'ends_with_period',
    'exact_match',
    'f1',
    'length_ratio',
    'rougeL',
  ]);
  // per-task breakdown by the task column: one entry per color
  expect(Object.keys(tuned.byTask).sort()).toEqual(['blue', 'green', 'red', 'yellow']);
  expect(Object.values(tuned.byTask).reduce((s, t) => s + t.count, 0)).toBe(r.items.length);

  const results = readFileSync(r.files.results, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(results).toHaveLength(r.items.length);
  expect(Object.keys(results[0].outputs)).toEqual(['base', 'out/adapter']);
  expect(results[0].metrics['out/adapter'].rougeL).toBe(tuned.scores[0].rougeL);
  expect(results[0].reference).toMatch(/^The answer is \w+\.$/);
  const summary = JSON.parse(readFileSync(r.files.summary, 'utf8'));
  expect(summary.models.map((m: { name: string }) => m.name)).toEqual(['base', 'out/adapter']);
  expect(summary.models[1].metrics.exact_match).toBe(tuned.metrics.exact_match);
  const md = readFileSync(r.files.markdown, 'utf8');
  expect(md).toContain('| model | loss | perplexity | exact_match | f1 | rougeL | length_ratio | ends_with_period |');
  expect(md).toContain('## Per task');
  const html = readFileSync(r.files.html, 'utf8');
  expect(html).toContain('Metrics per model');
  expect(html).toContain('Training loss: out/adapter'); // metrics.jsonl beside the adapter
  expect(lines.some((l) => l.startsWith('ft: eval out/adapter: loss'))).toBe(true);
}, 120_000);

it('the recipe hook evaluates the validation split with the loss the training loop logged', async () => {
  const lines: string[] = [];
  const r = await evaluateRecipe(recipe, trained.adapterDir, { recipeFile, log: (l) => lines.push(l) });
  expect(r.outDir).toBe(path.join(recipe.output_dir, 'eval'));
  const tuned = r.models[1];
  // perplexity = exp(mean loss) over the same tokens as recipes/train.ts's meanLoss on the validation batches
  expect(trained.finalEvalLoss).not.toBeNull();
  expect(tuned.loss.loss).toBeCloseTo(trained.finalEvalLoss!, 5);
  expect(tuned.loss.perplexity).toBeCloseTo(Math.exp(trained.finalEvalLoss!), 4);
  expect(r.items.length).toBeGreaterThan(0);
  expect(tuned.metrics.rougeL).toBeGreaterThan(r.models[0].metrics.rougeL);
}, 120_000);

it('eval rows that are training rows are refused, or evaluated with a loud warning', async () => {
  await expect(
    runEvalCommand(args({ data: trainFile, recipe: recipeFile, out: path.join(tmp, 'eval-overlap') })),
  ).rejects.toThrow(
    /^\d+ of \d+ eval rows also appear in the training rows of .*recipe\.yaml \(e\.g\. .*train\.jsonl line \d+\): scores on them are not held-out; remove them or pass --allow-overlap/,
  );
  const lines: string[] = [];
  const r = await runEvalCommand(
    args({
      data: trainFile,
      recipe: recipeFile,
      allowOverlap: true,
      base: false,
      maxSamples: 4,
      maxNewTokens: 2,
      out: path.join(tmp, 'eval-overlap'),
    }),
    (l) => lines.push(l),
  );
  expect(r.overlap!.overlapping).toBeGreaterThan(0);
  expect(lines.some((l) => /^ft: WARNING: \d+ of 4 eval rows also appear/.test(l))).toBe(true);
}, 60_000);
