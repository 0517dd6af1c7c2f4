// Memory needed to LoRA/QLoRA fine-tune a Llama-family model with ft: frozen base, adapters, their gradients
// and AdamW state, and the activations tfjs autodiff keeps for the backward pass.
import { groupPairs } from '../engine/attention.ts';
import type { LlamaConfig, LinearName } from '../model/types.ts';
import { LINEAR_NAMES, LOSS_CHUNK_ROWS } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { bitsPerWeight, type QuantKind } from './nf4.ts';

export interface MemoryOptions {
  quant: 'none' | QuantKind;
  doubleQuant: boolean;
  loraR: number;
  targetModules: readonly LinearName[];
  microBatchSize: number;
  sequenceLen: number;
  optimizer: 'adamw';
  /** recompute each decoder layer in the backward pass (model/llama.ts ForwardOptions.checkpoint) */
  gradientCheckpointing?: boolean;
}

export interface MemoryEstimate {
  baseBytes: number;
  adapterBytes: number;
  gradBytes: number;
  optimizerBytes: number;
  activationBytes: number;
  /**
   * a quantized base's float copies in flight: two of the largest projection. One is in flight per product now that
   * products read a transposed operand by stride; the second, once its transposed copy, is kept as margin (measured:
   * TinyLlama NF4 checkpointed at 1 x 256, 1.05 GiB of heap against 1.10 GiB estimated).
   */
  dequantBytes: number;
  totalBytes: number;
  /**
   * What the wasm heap holds on that backend: all but the packed 4-bit projections (JS memory). XNNPACK kept a
   * packed copy of every persistent weight it multiplied (+301 MiB after products against W [32000, 2048]); ft's
   * own products (engine/wasm-matmul.ts) now take every product against a weight, and the same products leave the
   * heap as it was.
   */
  heapBytes: number;
}

/** [out, in] of each projection of one decoder layer. */
export function projectionShapes(c: LlamaConfig): Record<LinearName, [number, number]> {
  const h = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const m = c.intermediateSize;
  return {
    q_proj: [q, h],
    k_proj: [kv, h],
    v_proj: [kv, h],
    o_proj: [h, q],
    gate_proj: [m, h],
    up_proj: [m, h],
    down_proj: [h, m],
  };
}

export function estimateMemory(c: LlamaConfig, o: MemoryOptions): MemoryEstimate {
  for (const [k, v] of [
    ['loraR', o.loraR],
    ['microBatchSize', o.microBatchSize],
    ['sequenceLen', o.sequenceLen],
  ] as const) {
    if (!Number.isInteger(v) || v < (k === 'loraR' ? 0 : 1))
      throw new FtError(`memory estimate: ${k} must be a positive integer, got ${v}`);
  }
  const shapes = projectionShapes(c);
  const L = c.numHiddenLayers;
  const h = c.hiddenSize;
  const V = c.vocabSize;

  // Frozen base: the projections quantized (or float32), everything else float32 (embeddings, norms, lm_head;
  // bnb also leaves lm_head unquantized). Biases (Qwen2 q/k/v) stay float32.
  const bitsPerParam = o.quant === 'none' ? 32 : bitsPerWeight(o.quant, undefined, o.doubleQuant);
  let projParams = 0;
  for (const name of LINEAR_NAMES) projParams += shapes[name][0] * shapes[name][1];
  const biasParams = c.attentionBias ? shapes.q_proj[0] + 2 * shapes.k_proj[0] : 0;
  const floatParams = V * h * (c.tieWordEmbeddings ? 1 : 2) + h + L * (2 * h + biasParams);
  const projBytes = Math.ceil((L * projParams * bitsPerParam) / 8);
  const baseBytes = projBytes + 4 * floatParams;
  const packedBytes = o.quant === 'none' ? 0 : projBytes; // held in JS memory, outside the wasm heap

  // LoRA: A [r, in] and B [out, r] per targeted projection per layer, float32; one gradient each; AdamW keeps m and v.
  let loraParams = 0;
  for (const name of o.targetModules) loraParams += o.loraR * (shapes[name][0] + shapes[name][1]);
  loraParams *= L;
  const adapterBytes = 4 * loraParams;
  const gradBytes = adapterBytes;
  const optimizerBytes = 2 * adapterBytes;

  // Activations, float32. tfjs autodiff keeps every tensor the forward pass makes until the backward pass ends,
  // and every gradient it computes until then too: about twice the forward tensors. Per token and decoder layer
  // (model/llama.ts, adapters/lora.ts, engine/attention.ts; measured on the tiny preset within ~20% of the wasm heap):
  //   2 RMSNorms (square, normalized, weighted)                     6h
  //   each projection's output; a LoRA target adds A x, its scaled copy, B(...) and the sum: 2·out + 2r
  //   heads split, RoPE (rotate, two products, sum) on q and k, q scaled, per-pair q/k/v pieces and k^T,
  //   attention outputs, stacked and merged back                     10q + 9kv
  //   SwiGLU: sigmoid, silu, product                                 3m
  //   residual sums                                                  2h
  // Outside the layers: embeddings, final norm (4h), logits and softmax probabilities (2V).
  // Attention scores are not kept: the backward pass recomputes the probabilities of a group of (row, kv head) pairs
  // at a time, holding about 5 score-sized temporaries of the group ([pairs, G·T, T], engine/attention.ts).
  const q = shapes.q_proj[0];
  const kv = shapes.k_proj[0];
  const m = c.intermediateSize;
  let projOut = 0;
  for (const name of LINEAR_NAMES) projOut += shapes[name][0];
  let loraExtra = 0;
  for (const name of o.targetModules) loraExtra += 2 * shapes[name][0] + 2 * o.loraR;
  const perTokenLayer = 6 * h + projOut + loraExtra + 10 * q + 9 * kv + 3 * m + 2 * h;
  const T = o.sequenceLen;
  const tokens = o.microBatchSize * T;
  const G = c.numAttentionHeads / c.numKeyValueHeads;
  const pairScores = G * T * T;
  const pairs = Math.min(o.microBatchSize * c.numKeyValueHeads, groupPairs(pairScores, c.numKeyValueHeads));
  const attention = 5 * pairs * pairScores;
  // With gradient checkpointing only each layer's input [tokens, h] is kept through the forward pass; the backward
  // pass recomputes one layer at a time, holding that layer's tensors and their gradients.
  const layersHeld = o.gradientCheckpointing
    ? tokens * L * h + 2 * tokens * perTokenLayer
    : 2 * tokens * L * perTokenLayer;
  // The head: final norm (4h per token), logits and probabilities (2V); checkpointed, one loss chunk's logits at a time.
  const logitRows = o.gradientCheckpointing ? Math.min(tokens, LOSS_CHUNK_ROWS) : tokens;
  const activationBytes = 4 * (layersHeld + 2 * tokens * 4 * h + 2 * logitRows * 2 * V + attention);

  const dequantBytes =
    o.quant === 'none' ? 0 : 2 * 4 * Math.max(...LINEAR_NAMES.map((n) => shapes[n][0] * shapes[n][1]));
  const totalBytes = baseBytes + adapterBytes + gradBytes + optimizerBytes + activationBytes + dequantBytes;
  return {
    baseBytes,
    adapterBytes,
    gradBytes,
    optimizerBytes,
    activationBytes,
    dequantBytes,
    totalBytes,
    heapBytes: totalBytes - packedBytes,
  };
}

/** 1536 -> "1.5 KiB". */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[u]}`;
}
