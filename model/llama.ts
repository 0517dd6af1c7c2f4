// The Llama decoder forward pass (and Mistral / Qwen2, which share it), following Hugging Face modeling_llama:
// embed -> N x [x + attn(rmsNorm(x)); x + mlp(rmsNorm(x))] -> rmsNorm -> lm_head.
// Every projection goes through Linear.apply, so float, quantized and LoRA layers plug in unchanged.
import * as tf from '@tensorflow/tfjs';
import { maskedAttention } from '../engine/attention.ts';
import { chunkedCrossEntropy, crossEntropy, type ScoredTargets } from '../engine/cross-entropy.ts';
import { mmFrozenT } from '../engine/matmul.ts';
import { recompute, type Replay } from '../engine/recompute.ts';
import { rmsNorm } from '../engine/rms-norm.ts';
import { swiglu } from '../engine/swiglu.ts';
import { applyRotary, RotaryTable, type RotaryInputs } from '../engine/rope.ts';
import { FtError } from '../util/errors.ts';
import type { KVCache } from './kv-cache.ts';
import {
  IGNORE_INDEX,
  LOSS_CHUNK_ROWS,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  type TokenBatch,
  type TrainBatch,
} from './types.ts';

/** Added to attention scores a query may not see; finite so a fully masked row stays NaN-free. */
const MASKED = -1e9;

/**
 * RoPE inverse frequencies inv_freq[i] = theta^(-2i/d), i < d/2, with the Llama 3.1 adjustment when
 * rope_scaling is llama3: long wavelengths are divided by `factor`, short ones kept, the band between blended.
 */
export function ropeInvFreq(config: LlamaConfig): Float64Array {
  const d = config.headDim;
  const invFreq = new Float64Array(d / 2);
  for (let i = 0; i < d / 2; i++) invFreq[i] = Math.fround(1 / Math.pow(config.ropeTheta, (2 * i) / d));
  const s = config.ropeScaling;
  if (!s) return invFreq;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < d / 2; i++) {
    const wavelen = (2 * Math.PI) / invFreq[i];
    if (wavelen > lowFreqWavelen) {
      invFreq[i] = invFreq[i] / s.factor;
    } else if (wavelen >= highFreqWavelen) {
      const smooth =
        (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      invFreq[i] = (1 - smooth) * (invFreq[i] / s.factor) + smooth * invFreq[i];
    }
    invFreq[i] = Math.fround(invFreq[i]);
  }
  return invFreq;
}

const rotaryTables = new WeakMap<LlamaConfig, RotaryTable>();

/** The rotary inputs of a batch, from the model's cached table. */
function rope(config: LlamaConfig, batch: TokenBatch): RotaryInputs {
  let table = rotaryTables.get(config);
  if (!table) rotaryTables.set(config, (table = new RotaryTable(ropeInvFreq(config))));
  return table.inputs(batch.positions, batch.B, batch.T);
}

/**
 * Additive attention masks for T queries after `past` cached keys (S = past + T): one [G*T, S] matrix per batch
 * row, its [T, S] block repeated for the G query heads that share a key/value head (see `attention`).
 * Query t of row b (absolute index past + t) sees key s when s <= past + t and both carry the same
 * non-zero segment. A padding query (segment 0) sees only itself, so its (ignored) output stays finite.
 */
export function attentionMasks(
  querySegments: Int32Array,
  keySegments: Int32Array,
  B: number,
  T: number,
  S: number,
  G = 1,
): tf.Tensor2D[] {
  const past = S - T;
  const masks: tf.Tensor2D[] = [];
  for (let b = 0; b < B; b++) {
    const mask = new Float32Array(G * T * S).fill(MASKED);
    for (let t = 0; t < T; t++) {
      const q = past + t;
      const seg = querySegments[b * T + t];
      const row = t * S;
      if (seg === 0) mask[row + q] = 0;
      else for (let s = 0; s <= q; s++) if (keySegments[b * S + s] === seg) mask[row + s] = 0;
    }
    for (let g = 1; g < G; g++) mask.copyWithin(g * T * S, 0, T * S);
    masks.push(tf.tensor2d(mask, [G * T, S]));
  }
  return masks;
}

/** [B*T, heads*d] -> [B, heads, T, d] (for one token, as in decoding, the same values in the same order: no copy) */
function splitHeads(x: tf.Tensor2D, B: number, T: number, heads: number, d: number): tf.Tensor4D {
  if (T === 1) return tf.reshape(x, [B, heads, 1, d]);
  return tf.transpose(tf.reshape(x, [B, T, heads, d]), [0, 2, 1, 3]);
}

/** [B, heads, T, d] -> [B*T, heads*d], splitHeads undone */
function mergeHeads(x: tf.Tensor4D): tf.Tensor2D {
  const [B, heads, T, d] = x.shape;
  if (T === 1) return tf.reshape(x, [B, heads * d]);
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B * T, heads * d]);
}

/** What every decoder layer of one forward pass shares. */
interface LayerContext {
  config: LlamaConfig;
  B: number;
  T: number;
  rope: RotaryInputs;
  /** B x [G*T, S] additive masks (see attentionMasks) */
  masks: tf.Tensor2D[];
  cache?: KVCache;
}

/**
 * Grouped-query self-attention (Ainslie et al. 2023). Query head h reads key/value head floor(h / G),
 * G = heads / kvHeads; instead of repeat_kv the G query heads of a group are stacked along the time axis.
 */
function attention(layer: LlamaLayer, x: tf.Tensor2D, ctx: LayerContext, layerIndex: number): tf.Tensor2D {
  const { B, T } = ctx;
  const { numAttentionHeads: H, numKeyValueHeads: KV, headDim: d } = ctx.config;
  const group = H / KV;
  const q = applyRotary(splitHeads(layer.proj.q_proj.apply(x), B, T, H, d), ctx.rope); // [B, H, T, d]
  let k = applyRotary(splitHeads(layer.proj.k_proj.apply(x), B, T, KV, d), ctx.rope); // [B, KV, T, d]
  let v = splitHeads(layer.proj.v_proj.apply(x), B, T, KV, d); // [B, KV, T, d]
  if (ctx.cache) [k, v] = ctx.cache.append(layerIndex, k, v); // [B, KV, S, d]
  const S = k.shape[2];
  const qg = tf.reshape<tf.Rank.R3>(tf.mul(q, 1 / Math.sqrt(d)), [B * KV, group * T, d]);
  const out = maskedAttention(qg, tf.reshape(k, [B * KV, S, d]), tf.reshape(v, [B * KV, S, d]), ctx.masks, KV); // [B*KV, G*T, d]
  return layer.proj.o_proj.apply(mergeHeads(tf.reshape(out, [B, H, T, d])));
}

/** SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x)). */
function mlp(layer: LlamaLayer, x: tf.Tensor2D): tf.Tensor2D {
  return layer.proj.down_proj.apply(swiglu(layer.proj.gate_proj.apply(x), layer.proj.up_proj.apply(x)));
}

function checkBatch(w: LlamaWeights, batch: TokenBatch): void {
  const n = batch.B * batch.T;
  for (const key of ['ids', 'segments', 'positions'] as const) {
    if (batch[key].length !== n)
      throw new FtError(`token batch: ${key} has ${batch[key].length} entries, expected B*T = ${n}`);
  }
  const V = w.config.vocabSize;
  for (let i = 0; i < n; i++) {
    const id = batch.ids[i];
    if (id < 0 || id >= V) throw new FtError(`token batch: id ${id} at index ${i} is outside the vocabulary [0, ${V})`);
    if (batch.positions[i] < 0) throw new FtError(`token batch: negative position ${batch.positions[i]} at index ${i}`);
  }
}

export interface ForwardOptions {
  /** 'last': logits only for the final position of each row ([B, 1, vocab]), as generation needs. */
  logits?: 'all' | 'last';
  /**
   * Gradient checkpointing: keep only each decoder layer's input and recompute the layer in the backward pass, so
   * training holds one layer's activations at a time instead of all of them (one more forward pass of compute);
   * the head and loss then go `lossChunkRows` rows at a time. `replay` rewinds the random stream of LoRA dropout
   * for the recomputation. Not with a KV cache.
   */
  recompute?: { replay?: Replay; lossChunkRows?: number };
}

/** One decoder layer: h + attn(rmsNorm(h)), then + mlp(rmsNorm(.)). */
function block(layer: LlamaLayer, h: tf.Tensor2D, ctx: LayerContext, i: number): tf.Tensor2D {
  const eps = ctx.config.rmsNormEps;
  const mid = tf.add<tf.Tensor2D>(h, attention(layer, rmsNorm(h, layer.inputLayernorm, eps), ctx, i));
  return tf.add<tf.Tensor2D>(mid, mlp(layer, rmsNorm(mid, layer.postAttentionLayernorm, eps)));
}

/**
 * Logits [B, T, vocab] for a batch of token rows. With a cache, the batch continues the cached rows:
 * its keys/values are appended (the cache grows by T) and its queries also attend to the cached keys.
 */
export function forward(w: LlamaWeights, batch: TokenBatch, cache?: KVCache, opts: ForwardOptions = {}): tf.Tensor3D {
  return tf.tidy(() => {
    const h = finalHidden(w, batch, cache, opts);
    const logits = lmHead(w, h);
    return tf.reshape(logits, [batch.B, h.shape[0] / batch.B, w.config.vocabSize]);
  });
}

/** Logits [n, vocab] of final hidden states [n, hidden]: lm_head, or the embedding matrix when tied. */
export function lmHead(w: LlamaWeights, h: tf.Tensor2D): tf.Tensor2D {
  return w.lmHead ? w.lmHead.apply(h) : mmFrozenT(h, w.embedTokens);
}

/** The context of a batch's decoder layers: masks over the cached and new keys, rotary inputs. */
function layerContext(config: LlamaConfig, batch: TokenBatch, cache?: KVCache): LayerContext {
  const { B, T } = batch;
  const keySegments = cache ? cache.appendSegments(batch) : batch.segments; // [B, S]
  const group = config.numAttentionHeads / config.numKeyValueHeads;
  const masks = attentionMasks(batch.segments, keySegments, B, T, keySegments.length / B, group);
  return { config, B, T, rope: rope(config, batch), masks, cache };
}

/** The decoder's output after the final RMSNorm, [B*T, hidden] ([B, hidden] with logits 'last'): what lm_head reads. */
export function finalHidden(
  w: LlamaWeights,
  batch: TokenBatch,
  cache?: KVCache,
  opts: ForwardOptions = {},
): tf.Tensor2D {
  checkBatch(w, batch);
  const { config } = w;
  const { B, T } = batch;
  if (cache && opts.recompute) throw new Error('forward: recompute is for training, not with a KV cache');
  return tf.tidy(() => {
    const ctx = layerContext(config, batch, cache);
    let h = tf.gather(w.embedTokens, tf.tensor1d(batch.ids, 'int32')) as tf.Tensor2D; // [B*T, hidden]
    w.layers.forEach((layer, i) => {
      if (!opts.recompute) {
        h = block(layer, h, ctx, i);
        return;
      }
      const params = Object.values(layer.proj).flatMap((p) => p.trainableVariables?.() ?? []);
      // the recomputation runs after this forward pass has freed its masks and rotary inputs: it builds its own
      const run = (x: tf.Tensor2D, again: boolean) => block(layer, x, again ? layerContext(config, batch) : ctx, i);
      h = recompute(run, h, params, opts.recompute.replay);
    });
    if (opts.logits === 'last') h = tf.reshape(tf.slice(tf.reshape(h, [B, T, -1]), [0, T - 1, 0], [B, 1, -1]), [B, -1]);
    return rmsNorm(h, w.norm, config.rmsNormEps);
  });
}

/** Frees every tensor of the model (projections included). */
export function disposeLlama(w: LlamaWeights): void {
  w.embedTokens.dispose();
  w.norm.dispose();
  w.lmHead?.dispose();
  for (const layer of w.layers) {
    layer.inputLayernorm.dispose();
    layer.postAttentionLayernorm.dispose();
    for (const p of Object.values(layer.proj)) p.dispose();
  }
}

/** Labels [N] (already shifted; IGNORE_INDEX skipped) as the rows cross-entropy scores, checked against the vocabulary. */
function scoredTargets(labels: Int32Array, N: number, V: number): ScoredTargets {
  if (labels.length !== N) throw new FtError(`labels: ${labels.length} entries, expected B*T = ${N}`);
  const targets = new Int32Array(N);
  let count = 0;
  labels.forEach((y, n) => {
    if (y !== IGNORE_INDEX && (y < 0 || y >= V))
      throw new FtError(
        `labels: label ${y} at index ${n} is outside the vocabulary [0, ${V}) and is not ${IGNORE_INDEX}`,
      );
    targets[n] = y === IGNORE_INDEX ? -1 : y;
    if (y !== IGNORE_INDEX) count++;
  });
  return { targets, count };
}

/**
 * Mean token cross-entropy of `logits` [B, T, vocab] against `labels` [B*T] (already shifted: labels[t] is the
 * target of logits at t; IGNORE_INDEX skipped). `count` = tokens scored; with none the loss is 0.
 */
export function causalLmLoss(logits: tf.Tensor3D, labels: Int32Array): { loss: tf.Scalar; count: number } {
  const [B, T, V] = logits.shape;
  const scored = scoredTargets(labels, B * T, V);
  const loss = tf.tidy(() => crossEntropy(tf.reshape(logits, [B * T, V]), scored));
  return { loss, count: scored.count };
}

/**
 * The loss a training step differentiates: causalLmLoss of the batch's logits; under recompute (gradient
 * checkpointing) the head and the loss go `lossChunkRows` rows at a time. Same value and gradients either way.
 */
export function trainingLoss(
  w: LlamaWeights,
  batch: TrainBatch,
  opts: ForwardOptions = {},
): { loss: tf.Scalar; count: number } {
  if (!opts.recompute) return causalLmLoss(forward(w, batch, undefined, opts), batch.labels);
  const scored = scoredTargets(batch.labels, batch.B * batch.T, w.config.vocabSize);
  const loss = tf.tidy(() =>
    chunkedCrossEntropy(
      finalHidden(w, batch, undefined, opts),
      (x) => lmHead(w, x),
      scored,
      opts.recompute!.lossChunkRows ?? LOSS_CHUNK_ROWS,
    ),
  );
  return { loss, count: scored.count };
}
