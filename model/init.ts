// A deterministic random Llama in Hugging Face layout: the tiny model every test, example and benchmark can start from.
import { Rng } from '../util/rng.ts';
import { expectedTensors } from './load.ts';
import type { SafetensorsEntry } from './safetensors.ts';
import type { LlamaConfig } from './types.ts';

/** Std of the normal init of embeddings and projections (transformers' initializer_range). */
export const INITIALIZER_RANGE = 0.02;

/**
 * Every tensor of `config` as lazily generated F32 entries: RMSNorm weights 1, biases 0, the rest normal(0, initializer_range).
 * Each tensor draws from its own generator seeded in order from `seed`, so its values do not depend on when (or how often) they are produced.
 */
export function randomTensors(config: LlamaConfig, seed: number, std = INITIALIZER_RANGE): SafetensorsEntry[] {
  const rng = new Rng(seed);
  return expectedTensors(config).map(({ name, shape }) => {
    const tensorSeed = rng.nextU32();
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('norm.weight')
      ? () => new Float32Array(n).fill(1)
      : name.endsWith('.bias')
        ? () => new Float32Array(n)
        : () => {
            const own = new Rng(tensorSeed);
            return Float32Array.from({ length: n }, () => std * own.normal());
          };
    return { name, dtype: 'F32' as const, shape, data };
  });
}
