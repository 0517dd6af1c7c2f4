// Test helpers: a small Llama with seeded random weights, in memory or as a model folder, for adapter and export tests.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { configJson } from '../model/config.ts';
import { randomTensors } from '../model/init.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import { denseLinear, type LinearFactory } from '../model/linear.ts';
import { hfModuleName, LINEAR_NAMES, type LinearName, type LlamaConfig, type LlamaWeights, type TokenBatch } from '../model/types.ts';
import { Rng } from '../util/rng.ts';

export interface TinyShape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  tie: boolean;
}

export const TINY: TinyShape = { hidden: 16, intermediate: 24, layers: 2, heads: 4, kvHeads: 2, vocab: 32, tie: false };

export function tinyConfig(s: TinyShape = TINY): LlamaConfig {
  const raw = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    vocab_size: s.vocab,
    max_position_embeddings: 64,
    tie_word_embeddings: s.tie,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  return {
    architecture: 'LlamaForCausalLM',
    hiddenSize: s.hidden,
    intermediateSize: s.intermediate,
    numHiddenLayers: s.layers,
    numAttentionHeads: s.heads,
    numKeyValueHeads: s.kvHeads,
    headDim: s.hidden / s.heads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    vocabSize: s.vocab,
    maxPositionEmbeddings: 64,
    tieWordEmbeddings: s.tie,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    raw,
  };
}

/** [out, in] of each projection for a config. */
export function projShape(c: LlamaConfig, p: LinearName): [number, number] {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const shapes: Record<LinearName, [number, number]> = {
    q_proj: [q, c.hiddenSize],
    k_proj: [kv, c.hiddenSize],
    v_proj: [kv, c.hiddenSize],
    o_proj: [c.hiddenSize, q],
    gate_proj: [c.intermediateSize, c.hiddenSize],
    up_proj: [c.intermediateSize, c.hiddenSize],
    down_proj: [c.hiddenSize, c.intermediateSize],
  };
  return shapes[p];
}

export function randomArray(rng: Rng, n: number, std: number, mean = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * rng.normal();
  return a;
}

/** Random weights for `c` (std 0.2 projections, norms near 1), each projection built by `factory`. */
export function randomWeights(c: LlamaConfig = tinyConfig(), seed = 1, factory: LinearFactory = denseLinear): LlamaWeights {
  const rng = new Rng(seed);
  const h = c.hiddenSize;
  const layers = [...Array(c.numHiddenLayers).keys()].map((i) => {
    const proj = {} as LlamaWeights['layers'][number]['proj'];
    for (const p of LINEAR_NAMES) {
      const [out, inp] = projShape(c, p);
      proj[p] = factory(`${hfModuleName(i, p)}.weight`, randomArray(rng, out * inp, 0.2), out, inp, null);
    }
    return {
      inputLayernorm: tf.tensor1d(randomArray(rng, h, 0.1, 1)),
      postAttentionLayernorm: tf.tensor1d(randomArray(rng, h, 0.1, 1)),
      proj,
    };
  });
  return {
    config: c,
    embedTokens: tf.tensor2d(randomArray(rng, c.vocabSize * h, 0.5), [c.vocabSize, h]),
    layers,
    norm: tf.tensor1d(randomArray(rng, h, 0.1, 1)),
    lmHead: c.tieWordEmbeddings ? null : factory('lm_head.weight', randomArray(rng, c.vocabSize * h, 0.2), c.vocabSize, h, null),
  };
}

/** One unpacked row per sequence (all the same length), as forward() takes it. */
export function tokenBatch(rows: number[][]): TokenBatch {
  const B = rows.length;
  const T = rows[0].length;
  return {
    B,
    T,
    ids: Int32Array.from(rows.flat()),
    segments: new Int32Array(B * T).fill(1),
    positions: Int32Array.from(rows.flatMap((r) => r.map((_, t) => t))),
  };
}

/** Writes a random model folder (config.json + model.safetensors, std `std` weights) the way init-model lays one out. */
export async function writeRandomModel(dir: string, c: LlamaConfig = tinyConfig(), seed = 1, std = 0.2): Promise<void> {
  const { raw, ...rest } = c;
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(configJson(rest, { torch_dtype: 'float32' }), null, 2));
  await writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(c, seed, std));
}
