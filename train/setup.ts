// From a recipe to a model ready to train: base model located (or created for the embedded default),
// frozen base loaded float or NF4, LoRA attached.
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { attachLora, targetNames, type Adapter } from '../adapters/lora.ts';
import { loadLlama } from '../model/load.ts';
import { createSynthDatasets } from '../data/synth-write.ts';
import { synthCorpus } from '../data/synth.ts';
import { initModel } from '../model/init.ts';
import { denseLinear } from '../model/linear.ts';
import type { LlamaConfig, LlamaWeights } from '../model/types.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { estimateMemory, humanBytes, WASM_HEAP_LIMIT } from '../quant/memory.ts';
import { FtError } from '../util/errors.ts';
import { locateBaseModel, loraConfigOf, type Recipe } from './recipe.ts';

/**
 * The base model's folder; a missing local folder is created from `base_model_init` when the recipe has one (its
 * tokenizer trained on ft's synth text), and missing `synth` datasets are generated first.
 */
export async function resolveBaseModel(recipe: Recipe, log: (line: string) => void): Promise<string> {
  await createSynthDatasets(recipe.datasets, log); // the embedded default's data, generated on first use like its base
  const loc = locateBaseModel(recipe.base_model);
  if (loc.kind === 'hub') {
    if (!loc.path) {
      throw new FtError(
        `base_model '${loc.id}' is not in the Hugging Face cache (${process.env.HF_HUB_CACHE ?? process.env.HF_HOME ?? '~/.cache/huggingface'}): ` +
          `download it where the Hub is reachable (huggingface-cli download ${loc.id}) or set base_model to a local folder`,
      );
    }
    return loc.path;
  }
  if (!existsSync(loc.path)) {
    if (!recipe.base_model_init) throw new FtError(`base_model '${loc.path}': no such folder (set base_model_init to create a random model there)`);
    log(`ft: creating base model ${loc.path} (preset ${recipe.base_model_init.preset}, seed ${recipe.base_model_init.seed})`);
    const { preset, seed, init_std: initStd } = recipe.base_model_init;
    await initModel(loc.path, { preset, seed, initStd, corpus: synthCorpus() });
  }
  return loc.path;
}

export interface TrainableModel {
  weights: LlamaWeights;
  adapter: Adapter;
}

/** Loads the frozen base from `modelDir` (NF4 when load_in_4bit, quantized one tensor at a time as it loads) and attaches a fresh, seeded LoRA. */
export async function loadTrainableModel(recipe: Recipe, modelDir: string, recipeFile: string): Promise<TrainableModel> {
  const weights = await loadLlama(modelDir, { linear: recipe.load_in_4bit ? quantizedLinear('nf4') : denseLinear });
  const adapter = attachLora(weights, loraConfigOf(recipe), recipe.seed, recipeFile);
  return { weights, adapter };
}

const HEAP_HEADROOM = 0.8;

/**
 * A warning when the run (its wasm heap estimated as `ft memory` does) may not fit the wasm heap, with what would help;
 * null when they fit or the backend has no such limit. Said before the weights load, not after minutes of it.
 */
export function wasmHeapWarning(recipe: Recipe, config: LlamaConfig): string | null {
  if (tf.getBackend() !== 'wasm') return null;
  const lora = loraConfigOf(recipe);
  const estimate = (gradientCheckpointing: boolean) =>
    estimateMemory(config, {
      quant: recipe.load_in_4bit ? 'nf4' : 'none',
      doubleQuant: true,
      loraR: lora.r,
      targetModules: targetNames(lora),
      microBatchSize: recipe.micro_batch_size,
      sequenceLen: recipe.sequence_len,
      optimizer: 'adamw',
      gradientCheckpointing,
    }).heapBytes;
  // measured wasm heaps ran up to 1.2x the estimate (TinyLlama; fragmentation, transient packed weights), so
  // warn from 80% of the limit
  const need = estimate(recipe.gradient_checkpointing);
  if (need <= HEAP_HEADROOM * WASM_HEAP_LIMIT) return null;
  const help = [];
  if (!recipe.gradient_checkpointing) help.push(`gradient_checkpointing: true (about ${humanBytes(estimate(true))})`);
  help.push('a smaller micro_batch_size or sequence_len', recipe.load_in_4bit ? '' : 'load_in_4bit: true');
  return (
    `ft: warning: this run needs about ${humanBytes(need)} of wasm heap, which holds ${humanBytes(WASM_HEAP_LIMIT)} ` +
    `(measured heaps ran up to 1.2x the estimate); try ${help.filter(Boolean).join(', or ')}`
  );
}
