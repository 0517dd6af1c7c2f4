// From a recipe to a model ready to train: base model located (downloaded from the Hub, or created for the embedded default),
// frozen base loaded float or NF4, LoRA attached.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { attachLora, targetNames } from '../adapters/lora.ts';
import { createSynthDatasets } from '../data/synth-write.ts';
import { synthCorpus } from '../data/synth.ts';
import { resolveHubDatasets } from '../hub/dataset.ts';
import { downloadModel } from '../hub/model.ts';
import { loadLlama } from '../model/load.ts';
import { initModel } from '../model/init.ts';
import { denseLinear } from '../model/linear.ts';
import type { LlamaConfig } from '../model/types.ts';
import type { TrainableModel } from '../train/loop.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { WASM_HEAP_LIMIT } from '../engine/heap-compute.ts';
import { estimateMemory, humanBytes } from '../quant/memory.ts';
import { FtError } from '../util/errors.ts';
import { loraConfigOf } from './recipe.ts';
import type { Recipe } from './schema.ts';

/**
 * The base model's folder: a Hub id's snapshot in the Hugging Face cache (downloaded when missing); a missing local
 * folder is created from `base_model_init` when the recipe has one (its tokenizer trained on ft's synth text), and
 * missing `synth` datasets are generated first.
 */
export async function resolveBaseModel(recipe: Recipe, log: (line: string) => void): Promise<string> {
  await createSynthDatasets(recipe.datasets, log); // the embedded default's data, generated on first use like its base
  if (!path.isAbsolute(recipe.base_model))
    return (await downloadModel(recipe.base_model, recipe.base_model_revision, { log })).dir;
  if (!existsSync(recipe.base_model)) {
    if (!recipe.base_model_init)
      throw new FtError(
        `base_model '${recipe.base_model}': no such folder (set base_model_init to create a random model there)`,
      );
    log(
      `ft: creating base model ${recipe.base_model} (preset ${recipe.base_model_init.preset}, seed ${recipe.base_model_init.seed})`,
    );
    const { preset, seed, init_std: initStd } = recipe.base_model_init;
    await initModel(recipe.base_model, { preset, seed, initStd, corpus: synthCorpus() }); // its tokenizer trained on ft's synth text
  }
  return recipe.base_model;
}

/** The recipe with its datasets by Hub id resolved to their files in the Hugging Face cache (downloaded when missing) as data_files. */
export async function withHubDatasets(recipe: Recipe, log: (line: string) => void): Promise<Recipe> {
  return { ...recipe, datasets: await resolveHubDatasets(recipe.datasets, { log }) };
}

/** Loads the frozen base from `modelDir` (NF4 when load_in_4bit, quantized one tensor at a time as it loads) and attaches a fresh, seeded LoRA. */
export async function loadTrainableModel(
  recipe: Recipe,
  modelDir: string,
  recipeFile: string,
): Promise<TrainableModel> {
  const weights = await loadLlama(modelDir, { linear: recipe.load_in_4bit ? quantizedLinear('nf4') : denseLinear });
  const adapter = attachLora(weights, loraConfigOf(recipe), recipe.seed, recipeFile);
  return { weights, adapter };
}

const HEAP_HEADROOM = 0.8;
/** the recipe default (PEFT's LoraConfig r) */
const DEFAULT_LORA_R = 8;

/**
 * A warning when the run (its wasm heap estimated as `ft memory` does) may not fit the wasm heap, with what would help;
 * null when they fit or the backend has no such limit; an FtError when the estimate is past the heap's limit.
 * Said before the weights load, not after minutes of it.
 */
export function wasmHeapWarning(recipe: Recipe, config: LlamaConfig): string | null {
  if (tf.getBackend() !== 'wasm') return null;
  const lora = loraConfigOf(recipe);
  const estimate = (gradientCheckpointing: boolean, loraR = lora.r) =>
    estimateMemory(config, {
      quant: recipe.load_in_4bit ? 'nf4' : 'none',
      doubleQuant: true,
      loraR,
      targetModules: targetNames(lora),
      microBatchSize: recipe.micro_batch_size,
      sequenceLen: recipe.sequence_len,
      optimizer: 'adamw',
      gradientCheckpointing,
    });
  // measured wasm heaps ran up to 1.2x the estimate (TinyLlama; fragmentation, transient packed weights), so
  // warn from 80% of the limit; past the limit the run cannot start (wasm allocation fails)
  const need = estimate(recipe.gradient_checkpointing).heapBytes;
  if (need <= HEAP_HEADROOM * WASM_HEAP_LIMIT) return null;
  const help = [];
  const smallR = estimate(recipe.gradient_checkpointing, DEFAULT_LORA_R).heapBytes;
  if (lora.r > DEFAULT_LORA_R && smallR <= HEAP_HEADROOM * WASM_HEAP_LIMIT)
    help.push(`a smaller lora_r (about ${humanBytes(smallR)} with lora_r ${DEFAULT_LORA_R})`);
  if (!recipe.gradient_checkpointing)
    help.push(`gradient_checkpointing: true (about ${humanBytes(estimate(true).heapBytes)})`);
  help.push('a smaller micro_batch_size or sequence_len', recipe.load_in_4bit ? '' : 'load_in_4bit: true');
  const needs = `this run needs about ${humanBytes(need)} of wasm heap, which holds ${humanBytes(WASM_HEAP_LIMIT)}`;
  const tryThis = `try ${help.filter(Boolean).join(', or ')}`;
  if (need > WASM_HEAP_LIMIT) throw new FtError(`${needs}: it cannot run on the wasm backend; ${tryThis}`);
  return `ft: warning: ${needs} (measured heaps ran up to 1.2x the estimate); ${tryThis}`;
}
