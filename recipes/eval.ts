// The end-of-training eval a recipe's `eval:` section asks for: base against the trained adapter on held-out prompts.
import * as path from 'node:path';
import { prepareDataset, preparedPathOf } from '../data/prepared.ts';
import { denseLinear } from '../model/linear.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { quantizedLinear } from '../quant/linear.ts';
import type { Recipe } from './schema.ts';
import { resolveBaseModel, withHubDatasets } from './setup.ts';
import { FtError } from '../util/errors.ts';
import { entryFor, type EvalSource } from '../eval/items.ts';
import { trainingHashes } from '../eval/overlap.ts';
import { runEval } from '../eval/run.ts';
import type { EvalResult } from '../eval/types.ts';

export interface RecipeEvalOptions {
  /** the recipe file: relative dataset paths resolve against its folder (as in training) */
  recipeFile: string;
  /** default: `eval/` beside the adapter folder (output_dir/eval for output_dir/adapter) */
  outDir?: string;
  log?: (line: string) => void;
}

/**
 * Evaluates the base model and `adapterDir` as the recipe's `eval:` section says: on `eval.data`, else on the
 * recipe's validation split (never seen in training). An `eval.data` file overlapping the training rows is
 * warned about loudly (training is already done; the adapter is kept). Loads the base as training did (NF4 for QLoRA).
 */
export async function evaluateRecipe(recipe: Recipe, adapterDir: string, opts: RecipeEvalOptions): Promise<EvalResult> {
  const log = opts.log ?? (() => {});
  const section = recipe.eval;
  if (!section) throw new FtError(`${opts.recipeFile}: no eval section`);
  const baseDir = path.dirname(path.resolve(opts.recipeFile));
  const modelDir = await resolveBaseModel(recipe, log);
  recipe = await withHubDatasets(recipe, log);
  const tok = await loadTokenizer(modelDir);
  let data: EvalSource;
  let overlap;
  if (section.data) {
    data = { entries: [entryFor(section.data, section.data_type)], baseDir, maxSamples: section.max_samples };
    overlap = {
      hashes: await trainingHashes(recipe, tok, baseDir, preparedPathOf(recipe)),
      trainedOn: opts.recipeFile,
      allow: true,
    };
  } else {
    if (recipe.val_set_size === 0)
      throw new FtError(`${opts.recipeFile}: eval needs eval.data or a validation split (val_set_size > 0)`);
    const ds = await prepareDataset(recipe, tok, baseDir, { dir: preparedPathOf(recipe), build: false, log });
    data = {
      entries: recipe.datasets,
      baseDir,
      keep: (h) => ds.split.isValidation(h),
      maxSamples: section.max_samples,
    };
  }
  return runEval({
    model: modelDir,
    adapters: [adapterDir],
    data,
    outDir: opts.outDir ?? path.join(path.dirname(path.resolve(adapterDir)), 'eval'),
    generation: {
      maxNewTokens: section.max_new_tokens,
      temperature: section.temperature,
      topP: section.top_p,
      seed: recipe.seed,
    },
    sequenceLen: recipe.sequence_len,
    trainOnInputs: recipe.train_on_inputs,
    lossBatchSize: recipe.micro_batch_size,
    linear: recipe.load_in_4bit ? quantizedLinear('nf4') : denseLinear,
    overlap,
    log,
  });
}
