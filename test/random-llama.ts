// Small random Llama models for tests, in memory or as a model folder: deterministic for a seed.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { configJson } from '../model/config.ts';
import { randomTensors } from '../model/init.ts';
import { denseLinear, type Linear, type LinearFactory } from '../model/linear.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import {
  hfModuleName,
  LINEAR_NAMES,
  type LinearName,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  type TokenBatch,
} from '../model/types.ts';
import { projectionShapes } from '../quant/memory.ts';
import { Rng } from '../util/rng.ts';

/** hidden 32, 2 layers, 4 heads / 2 kv heads of 8, vocab 64: GQA and every code path, in milliseconds. */
export function tinyConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    architecture: 'LlamaForCausalLM',
    hiddenSize: 32,
    intermediateSize: 48,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    vocabSize: 64,
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: false,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    raw: {},
    ...overrides,
  };
}

/** An even smaller shape (hidden 16, heads of 4, vocab 32) for adapter-file and export tests. */
export const SMALL = tinyConfig({
  hiddenSize: 16,
  intermediateSize: 24,
  headDim: 4,
  vocabSize: 32,
  maxPositionEmbeddings: 64,
});

/** Gaussian values: mean + std · N(0, 1). */
export function randn(rng: Rng, n: number, std: number, mean = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * rng.normal();
  return a;
}

/**
 * A random model of `config` (projections ~ N(0, 1/in), embeddings ~ N(0, 1), norms ~ 1 + N(0, 0.1), Qwen2-style
 * q/k/v biases when the config has them), each projection built by `factory`; lm_head float, as loads make it.
 */
export function randomLlama(config: LlamaConfig, seed = 0, factory: LinearFactory = denseLinear): LlamaWeights {
  const rng = new Rng(seed);
  const { hiddenSize: h, vocabSize: V } = config;
  const shapes = projectionShapes(config);
  const norm = () => tf.tensor1d(randn(rng, h, 0.1, 1));
  const layers: LlamaLayer[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const proj = {} as Record<LinearName, Linear>;
    for (const name of LINEAR_NAMES) {
      const [out, inp] = shapes[name];
      const bias = config.attentionBias && ['q_proj', 'k_proj', 'v_proj'].includes(name) ? randn(rng, out, 0.1) : null;
      proj[name] = factory(hfModuleName(l, name), randn(rng, out * inp, 1 / Math.sqrt(inp)), out, inp, bias);
    }
    layers.push({ inputLayernorm: norm(), postAttentionLayernorm: norm(), proj });
  }
  return {
    config,
    embedTokens: tf.tensor2d(randn(rng, V * h, 1), [V, h]),
    layers,
    norm: norm(),
    lmHead: config.tieWordEmbeddings ? null : denseLinear('lm_head', randn(rng, V * h, 1 / Math.sqrt(h)), V, h, null),
  };
}

/** One row per sequence, no padding: segment 1, positions 0..n-1 (all rows the same length). */
export function rowsBatch(rows: number[][]): TokenBatch {
  const B = rows.length;
  const T = rows[0].length;
  return {
    B,
    T,
    ids: Int32Array.from(rows.flat()),
    segments: new Int32Array(B * T).fill(1),
    positions: Int32Array.from(rows.flatMap((r) => r.map((_, i) => i))),
  };
}

/** Writes a random model folder (config.json + model.safetensors, std `std` weights) the way init-model lays one out. */
export async function writeRandomModel(dir: string, c: LlamaConfig = SMALL, seed = 1, std = 0.2): Promise<void> {
  const { raw: _raw, ...rest } = c;
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(
    path.join(dir, 'config.json'),
    JSON.stringify(configJson(rest, { torch_dtype: 'float32' }), null, 2),
  );
  await writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(c, seed, std));
}
