// Small random Llama models built in memory for tests (no files): deterministic for a seed.
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../util/rng.ts';
import { DenseLinear, type Linear } from '../model/linear.ts';
import { LINEAR_NAMES, type LinearName, type LlamaConfig, type LlamaLayer, type LlamaWeights } from '../model/types.ts';

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

/** Gaussian values with standard deviation `std`. */
export function randn(rng: Rng, n: number, std: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
  return a;
}

/** A random model of `config` with float projections (weights ~ N(0, 1/in), norms ~ 1 + N(0, 0.1)). */
export function randomLlama(config: LlamaConfig, seed = 0): LlamaWeights {
  const rng = new Rng(seed);
  const { hiddenSize: h, intermediateSize: m, numAttentionHeads: H, numKeyValueHeads: KV, headDim: d, vocabSize: V } = config;
  const shapes: Record<LinearName, [number, number]> = {
    q_proj: [H * d, h],
    k_proj: [KV * d, h],
    v_proj: [KV * d, h],
    o_proj: [h, H * d],
    gate_proj: [m, h],
    up_proj: [m, h],
    down_proj: [h, m],
  };
  const norm = () => tf.tensor1d(randn(rng, h, 0.1).map((x) => 1 + x));
  const layers: LlamaLayer[] = [];
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const proj = {} as Record<LinearName, Linear>;
    for (const name of LINEAR_NAMES) {
      const [out, inp] = shapes[name];
      const bias = config.attentionBias && ['q_proj', 'k_proj', 'v_proj'].includes(name) ? randn(rng, out, 0.1) : null;
      proj[name] = new DenseLinear(randn(rng, out * inp, 1 / Math.sqrt(inp)), out, inp, bias);
    }
    layers.push({ inputLayernorm: norm(), postAttentionLayernorm: norm(), proj });
  }
  return {
    config,
    embedTokens: tf.tensor2d(randn(rng, V * h, 1), [V, h]),
    layers,
    norm: norm(),
    lmHead: config.tieWordEmbeddings ? null : new DenseLinear(randn(rng, V * h, 1 / Math.sqrt(h)), V, h),
  };
}

/** One row per sequence, no padding: segment 1, positions 0..n-1 (all rows the same length). */
export function rowsBatch(rows: number[][]) {
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
