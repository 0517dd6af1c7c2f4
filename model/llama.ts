// The Llama decoder forward pass (and Mistral / Qwen2, which share it), following Hugging Face modeling_llama:
// embed -> N x [x + attn(rmsNorm(x)); x + mlp(rmsNorm(x))] -> rmsNorm -> lm_head.
// Every projection goes through Linear.apply, so float, quantized and LoRA layers plug in unchanged.
import * as tf from '@tensorflow/tfjs';
import { attend } from '../engine/attention.ts';
import { checkpoint, type Replay } from '../engine/checkpoint.ts';
import { mmFrozen, mmFrozenT } from '../engine/matmul.ts';
import { FtError } from '../util/errors.ts';
import type { KVCache } from './kv-cache.ts';
import { IGNORE_INDEX, LOSS_CHUNK_ROWS, type LlamaConfig, type LlamaLayer, type LlamaWeights, type TokenBatch, type TrainBatch } from './types.ts';

/** Added to attention scores a query may not see; finite so a fully masked row stays NaN-free. */
const MASKED = -1e9;

/** RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight, over the last axis. */
export function rmsNorm<T extends tf.Tensor>(x: T, weight: tf.Tensor1D, eps: number): T {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight);
  }) as T;
}

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
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      invFreq[i] = (1 - smooth) * (invFreq[i] / s.factor) + smooth * invFreq[i];
    }
    invFreq[i] = Math.fround(invFreq[i]);
  }
  return invFreq;
}

/** cos/sin of position * inv_freq for positions [0, length), each row [d] = the d/2 angles twice (HF layout). */
interface RopeTable {
  length: number;
  cos: Float32Array; // [length, d]
  sin: Float32Array; // [length, d]
}

const ropeTables = new WeakMap<LlamaConfig, RopeTable>();

/** The cached RoPE table of `config`, grown (doubling) to cover `positions` up to `maxPosition`. */
function ropeTable(config: LlamaConfig, maxPosition: number): RopeTable {
  const cached = ropeTables.get(config);
  if (cached && cached.length > maxPosition) return cached;
  const d = config.headDim;
  let length = Math.max(64, cached?.length ?? 0);
  while (length <= maxPosition) length *= 2;
  const invFreq = ropeInvFreq(config);
  const cos = new Float32Array(length * d);
  const sin = new Float32Array(length * d);
  for (let p = 0; p < length; p++) {
    for (let i = 0; i < d / 2; i++) {
      const angle = Math.fround(p * invFreq[i]);
      cos[p * d + i] = cos[p * d + i + d / 2] = Math.cos(angle);
      sin[p * d + i] = sin[p * d + i + d / 2] = Math.sin(angle);
    }
  }
  const table = { length, cos, sin };
  ropeTables.set(config, table);
  return table;
}

/** RoPE inputs for a batch: cos and sin per token, and the rotate_half matrix. */
interface Rope {
  cos: tf.Tensor4D; // [B, 1, T, d], broadcast over heads
  sin: tf.Tensor4D; // [B, 1, T, d]
  rotate: tf.Tensor2D; // [d, d]: x @ rotate = rotate_half(x)
}

function ropeInputs(config: LlamaConfig, batch: TokenBatch): Rope {
  const d = config.headDim;
  const n = batch.B * batch.T;
  let maxPosition = 0;
  for (const p of batch.positions) maxPosition = Math.max(maxPosition, p);
  const table = ropeTable(config, maxPosition);
  const cos = new Float32Array(n * d);
  const sin = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const p = batch.positions[i];
    cos.set(table.cos.subarray(p * d, (p + 1) * d), i * d);
    sin.set(table.sin.subarray(p * d, (p + 1) * d), i * d);
  }
  // rotate_half: [x1, x2] -> [-x2, x1] on the two halves, as a signed permutation matrix: one 2-D product
  // instead of split + neg + concat (whose strided copies cost more than the product on wasm).
  const rotate = new Float32Array(d * d);
  for (let j = 0; j < d / 2; j++) {
    rotate[(j + d / 2) * d + j] = -1; // out[j] = -x[j + d/2]
    rotate[j * d + j + d / 2] = 1; // out[j + d/2] = x[j]
  }
  return { cos: tf.tensor4d(cos, [batch.B, 1, batch.T, d]), sin: tf.tensor4d(sin, [batch.B, 1, batch.T, d]), rotate: tf.tensor2d(rotate, [d, d]) };
}

/** x * cos + rotate_half(x) * sin; x [B, heads, T, d]. */
export function applyRope(x: tf.Tensor4D, { cos, sin, rotate }: Rope): tf.Tensor4D {
  const [B, heads, T, d] = x.shape;
  const rotated = tf.reshape(mmFrozen(tf.reshape(x, [B * heads * T, d]), rotate), [B, heads, T, d]);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

/**
 * Additive attention masks for T queries after `past` cached keys (S = past + T): one [G*T, S] matrix per batch
 * row, its [T, S] block repeated for the G query heads that share a key/value head (see `attention`).
 * Query t of row b (absolute index past + t) sees key s when s <= past + t and both carry the same
 * non-zero segment. A padding query (segment 0) sees only itself, so its (ignored) output stays finite.
 */
export function attentionMasks(querySegments: Int32Array, keySegments: Int32Array, B: number, T: number, S: number, G = 1): tf.Tensor2D[] {
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

/** [B*T, heads*d] -> [B, heads, T, d] */
function splitHeads(x: tf.Tensor2D, B: number, T: number, heads: number, d: number): tf.Tensor4D {
  return tf.transpose(tf.reshape(x, [B, T, heads, d]), [0, 2, 1, 3]);
}

/**
 * Grouped-query self-attention (Ainslie et al. 2023). Query head h reads key/value head floor(h / G),
 * G = heads / kvHeads; instead of repeat_kv the G query heads of a group are stacked along the time axis.
 * Each (batch row, key/value head) pair is one pair of 2-D products: tfjs-wasm runs batched (rank 3-4) matMul
 * on a slow generic loop (~1 GFLOP/s against ~15 for 2-D through XNNPACK), so the batch is unrolled, except
 * for short rows and decoding, where one batched product is cheaper than many small ones.
 */
function attention(
  layer: LlamaLayer,
  x: tf.Tensor2D, // [B*T, hidden]
  config: LlamaConfig,
  B: number,
  T: number,
  rope: Rope,
  masks: tf.Tensor2D[], // B x [G*T, S]
  cache: KVCache | undefined,
  layerIndex: number,
): tf.Tensor2D {
  const { numAttentionHeads: H, numKeyValueHeads: KV, headDim: d } = config;
  const G = H / KV;
  const q = applyRope(splitHeads(layer.proj.q_proj.apply(x), B, T, H, d), rope); // [B, H, T, d]
  let k = applyRope(splitHeads(layer.proj.k_proj.apply(x), B, T, KV, d), rope); // [B, KV, T, d]
  let v = splitHeads(layer.proj.v_proj.apply(x), B, T, KV, d); // [B, KV, T, d]
  if (cache) [k, v] = cache.append(layerIndex, k, v); // [B, KV, S, d]
  const S = k.shape[2];
  const qg = tf.reshape(tf.mul(q, 1 / Math.sqrt(d)), [B * KV, G * T, d]);
  const kg = tf.reshape(k, [B * KV, S, d]);
  const vg = tf.reshape(v, [B * KV, S, d]);
  let out: tf.Tensor; // [B*KV, G*T, d]
  if (G * T * S * d < 1 << 16) {
    // short rows or decoding: one batched product costs less than B*KV small ones and their per-op overhead
    // (measured on the tiny preset: batched wins below T ~ 48 rows, the unrolled products above)
    const scores = tf.reshape(tf.matMul(qg, kg, false, true), [B, KV, G * T, S]);
    const probs = tf.softmax(tf.add(scores, tf.expandDims(tf.stack(masks), 1)));
    out = tf.matMul(tf.reshape(probs, [B * KV, G * T, S]), vg);
  } else {
    const kTs = tf.unstack(tf.transpose(kg, [0, 2, 1])) as tf.Tensor2D[]; // [d, S] each
    const vs = tf.unstack(vg) as tf.Tensor2D[];
    const outs = (tf.unstack(qg) as tf.Tensor2D[]).map((qn, n) => attend(qn, kTs[n], vs[n], masks[Math.floor(n / KV)])); // [G*T, d] each
    out = tf.stack(outs);
  }
  const merged = tf.reshape<tf.Rank.R2>(tf.transpose(tf.reshape(out, [B, H, T, d]), [0, 2, 1, 3]), [B * T, H * d]);
  return layer.proj.o_proj.apply(merged);
}

/** SwiGLU MLP (Shazeer 2020): down(silu(gate(x)) * up(x)). */
function mlp(layer: LlamaLayer, x: tf.Tensor2D): tf.Tensor2D {
  const gate = layer.proj.gate_proj.apply(x);
  const silu = tf.mul(gate, tf.sigmoid(gate));
  return layer.proj.down_proj.apply(tf.mul(silu, layer.proj.up_proj.apply(x)));
}

function checkBatch(w: LlamaWeights, batch: TokenBatch): void {
  const n = batch.B * batch.T;
  for (const key of ['ids', 'segments', 'positions'] as const) {
    if (batch[key].length !== n) throw new FtError(`token batch: ${key} has ${batch[key].length} entries, expected B*T = ${n}`);
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
   * training holds one layer's activations at a time instead of all of them (one more forward pass of compute).
   * `replay` rewinds the random stream of LoRA dropout for the recomputation. Not with a KV cache.
   */
  checkpoint?: { replay?: Replay; lossChunkRows?: number };
}


/** One decoder layer: h + attn(rmsNorm(h)), then + mlp(rmsNorm(.)). */
function decoderLayer(layer: LlamaLayer, h: tf.Tensor2D, config: LlamaConfig, B: number, T: number, rope: Rope, masks: tf.Tensor2D[], cache: KVCache | undefined, i: number): tf.Tensor2D {
  const a = attention(layer, rmsNorm(h, layer.inputLayernorm, config.rmsNormEps), config, B, T, rope, masks, cache, i);
  const mid = tf.add<tf.Tensor2D>(h, a);
  return tf.add<tf.Tensor2D>(mid, mlp(layer, rmsNorm(mid, layer.postAttentionLayernorm, config.rmsNormEps)));
}

/**
 * Logits [B, T, vocab] for a batch of token rows. With a cache, the batch continues the cached rows:
 * its keys/values are appended (the cache grows by T) and its queries also attend to the cached keys.
 */
export function forward(w: LlamaWeights, batch: TokenBatch, cache?: KVCache, opts: ForwardOptions = {}): tf.Tensor3D {
  return tf.tidy(() => {
    const h = finalHidden(w, batch, cache, opts);
    return tf.reshape(lmHead(w, h), [batch.B, h.shape[0] / batch.B, w.config.vocabSize]);
  });
}

/** Logits [n, vocab] of final hidden states [n, hidden]: lm_head, or the embedding matrix when tied. */
export function lmHead(w: LlamaWeights, h: tf.Tensor2D): tf.Tensor2D {
  return w.lmHead ? w.lmHead.apply(h) : mmFrozenT(h, w.embedTokens);
}

/** The decoder's output after the final RMSNorm, [B*T, hidden] ([B, hidden] with logits 'last'): what lm_head reads. */
export function finalHidden(w: LlamaWeights, batch: TokenBatch, cache?: KVCache, opts: ForwardOptions = {}): tf.Tensor2D {
  checkBatch(w, batch);
  const { config } = w;
  const { B, T } = batch;
  return tf.tidy(() => {
    const keySegments = cache ? cache.appendSegments(batch) : batch.segments; // [B, S]
    const S = keySegments.length / B;
    const G = config.numAttentionHeads / config.numKeyValueHeads;
    const masks = attentionMasks(batch.segments, keySegments, B, T, S, G);
    const rope = ropeInputs(config, batch);
    let h = tf.gather(w.embedTokens, tf.tensor1d(batch.ids, 'int32')) as tf.Tensor2D; // [B*T, hidden]
    w.layers.forEach((layer, i) => {
      if (!opts.checkpoint) {
        h = decoderLayer(layer, h, config, B, T, rope, masks, cache, i);
        return;
      }
      if (cache) throw new Error('forward: checkpoint is for training, not with a KV cache');
      const params = Object.values(layer.proj).flatMap((p) => p.trainableVariables?.() ?? []);
      // the recomputation runs after this forward pass has freed its masks and RoPE tables: it builds its own
      const run = (x: tf.Tensor2D, recompute: boolean) =>
        recompute
          ? decoderLayer(layer, x, config, B, T, ropeInputs(config, batch), attentionMasks(batch.segments, batch.segments, B, T, T, G), undefined, i)
          : decoderLayer(layer, x, config, B, T, rope, masks, undefined, i);
      h = checkpoint(run, h, params, opts.checkpoint.replay);
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

/**
 * Mean token cross-entropy of `logits` [B, T, vocab] against `labels` [B*T] (already shifted:
 * labels[t] is the target of logits at t; IGNORE_INDEX skipped). `count` = tokens scored; with none the loss is 0.
 * The gradient is written out, (softmax - onehot) / count on scored rows, so the [B*T, vocab] tensors (the
 * largest of a step) are walked a few times instead of the ~15 of tf.logSoftmax's chain and its autodiff.
 */
export function causalLmLoss(logits: tf.Tensor3D, labels: Int32Array): { loss: tf.Scalar; count: number } {
  const [B, T, V] = logits.shape;
  const N = B * T;
  if (labels.length !== N) throw new FtError(`labels: ${labels.length} entries, expected B*T = ${N}`);
  const targets = new Int32Array(N); // -1 = ignored: oneHot gives it an all-zero row
  const flatIndex: number[] = []; // n*V + label of each scored row, to pick its logit
  const scored = new Float32Array(N); // 1 on scored rows
  labels.forEach((y, n) => {
    if (y !== IGNORE_INDEX && (y < 0 || y >= V)) {
      throw new FtError(`labels: label ${y} at index ${n} is outside the vocabulary [0, ${V}) and is not ${IGNORE_INDEX}`);
    }
    targets[n] = y === IGNORE_INDEX ? -1 : y;
    if (y !== IGNORE_INDEX) {
      flatIndex.push(n * V + y);
      scored[n] = 1;
    }
  });
  const count = flatIndex.length;
  if (count === 0) return { loss: tf.tidy(() => tf.mul(tf.sum(logits), 0)) as tf.Scalar, count };
  const crossEntropy = tf.customGrad(((z: tf.Tensor2D, save: tf.GradSaveFunc) => {
    // tf.softmax (one vectorized wasm kernel) rather than tf.exp, which runs ~3x slower per element on wasm.
    // log-sum-exp from it, stably: lse = max(z) - log(max(probs)), as max(probs) = 1 / sum(exp(z - max z)) >= 1/V.
    const probs = tf.softmax(z) as tf.Tensor2D; // [N, V]
    const lse = tf.sub(tf.max(z, -1), tf.log(tf.max(probs, -1))); // [N]
    const picked = tf.gather(tf.reshape(z, [-1]), tf.tensor1d(flatIndex, 'int32')); // [count] target logits
    const value = tf.div(tf.sub(tf.sum(tf.mul(lse, scored)), tf.sum(picked)), count);
    save([probs]);
    return {
      value,
      gradFunc: (dy: tf.Scalar, [p]: tf.Tensor[]) =>
        tf.tidy(() => {
          const rowScale = tf.mul(tf.reshape(tf.tensor1d(scored), [N, 1]), tf.div(dy, count)); // [N, 1]: dy/count on scored rows, 0 elsewhere
          // int32 one-hot then a cast: tfjs-wasm 4.22's OneHot with dtype float32 writes integer bit patterns
          return tf.mul(tf.sub(p, tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), V), 'float32')), rowScale);
        }),
    };
  }) as never) as unknown as (z: tf.Tensor2D) => tf.Scalar;
  const loss = tf.tidy(() => crossEntropy(tf.reshape(logits, [N, V])));
  return { loss, count };
}

/**
 * The loss a training step differentiates: causalLmLoss of the batch's logits. Under gradient checkpointing the head
 * and the loss also go `lossChunkRows` rows at a time, each chunk made again in the backward pass, so a step holds
 * one chunk's [rows, vocab] logits, probabilities and gradient instead of the whole batch's (the largest tensors of
 * a step with a 32k+ vocabulary). Same value and gradients either way.
 */
export function trainingLoss(w: LlamaWeights, batch: TrainBatch, opts: ForwardOptions = {}): { loss: tf.Scalar; count: number } {
  if (!opts.checkpoint) return causalLmLoss(forward(w, batch, undefined, opts), batch.labels);
  const chunkRows = opts.checkpoint.lossChunkRows ?? LOSS_CHUNK_ROWS;
  const { labels } = batch;
  let count = 0;
  for (const y of labels) if (y !== IGNORE_INDEX) count++;
  const loss = tf.tidy(() => {
    const h = finalHidden(w, batch, undefined, opts); // [N, hidden]
    const N = h.shape[0];
    if (labels.length !== N) throw new FtError(`labels: ${labels.length} entries, expected B*T = ${N}`);
    if (count === 0) return tf.mul(tf.sum(h), 0) as tf.Scalar;
    const parts: tf.Tensor2D[] = [];
    for (let start = 0; start < N; start += chunkRows) {
      const rows = Math.min(chunkRows, N - start);
      const part = labels.subarray(start, start + rows);
      const scored = part.reduce((n, y) => n + (y === IGNORE_INDEX ? 0 : 1), 0);
      if (scored === 0) continue;
      // the chunk's mean loss weighted by its share of the scored tokens: the chunks sum to the batch mean
      const chunkLoss = (x: tf.Tensor2D) => tf.reshape(tf.mul(causalLmLoss(tf.expandDims(lmHead(w, x), 0) as tf.Tensor3D, part).loss, scored / count), [1, 1]) as tf.Tensor2D;
      parts.push(checkpoint(chunkLoss, tf.slice(h, [start, 0], [rows, -1]), []));
    }
    return tf.reshape(tf.addN(parts), []) as tf.Scalar;
  });
  return { loss, count };
}
