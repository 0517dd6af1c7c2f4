// Memory needed to LoRA/QLoRA fine-tune a Llama-family model with ft: frozen base, adapters, their gradients
// and AdamW state, and the activations tfjs autodiff keeps for the backward pass.
import type { LlamaConfig, LinearName } from '../model/types.ts';
import { LINEAR_NAMES } from '../model/types.ts';
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
}

export interface MemoryEstimate {
  baseBytes: number;
  adapterBytes: number;
  gradBytes: number;
  optimizerBytes: number;
  activationBytes: number;
  totalBytes: number;
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
  for (const [k, v] of [['loraR', o.loraR], ['microBatchSize', o.microBatchSize], ['sequenceLen', o.sequenceLen]] as const) {
    if (!Number.isInteger(v) || v < (k === 'loraR' ? 0 : 1)) throw new FtError(`memory estimate: ${k} must be a positive integer, got ${v}`);
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
  const baseBytes = Math.ceil((L * projParams * bitsPerParam) / 8) + 4 * floatParams;

  // LoRA: A [r, in] and B [out, r] per targeted projection per layer, float32; one gradient each; AdamW keeps m and v.
  let loraParams = 0;
  for (const name of o.targetModules) loraParams += o.loraR * (shapes[name][0] + shapes[name][1]);
  loraParams *= L;
  const adapterBytes = 4 * loraParams;
  const gradBytes = adapterBytes;
  const optimizerBytes = 2 * adapterBytes;

  // Activations saved for backward, float32, per token. tfjs autodiff keeps every input of every op on the tape
  // whose gradient needs it, until the backward pass (no recomputation / checkpointing). Per decoder layer:
  //   2 RMSNorms: input and normed output                                  4h
  //   q/k/v/o inputs (x normed is shared) + q,k,v outputs + RoPE'd q,k      h + q + 2kv + (q + kv) + q(o_proj in)
  //   MLP: normed input, gate and up outputs, silu(gate), product (down in)  h + 4m
  //   LoRA per target: x·A^T [r] (and the input x, already counted)          r per target
  //   residual sums                                                          2h
  // plus attention scores and softmax probabilities per head: 2 · heads · T per token.
  // Outside the layers: embeddings out (h), final norm (2h), logits and log-softmax (2V).
  const q = shapes.q_proj[0];
  const kv = shapes.k_proj[0];
  const m = c.intermediateSize;
  const perTokenLayer = 4 * h + (h + q + 2 * kv + (q + kv) + q) + (h + 4 * m) + o.loraR * o.targetModules.length + 2 * h;
  const attnPerToken = 2 * c.numAttentionHeads * o.sequenceLen;
  const tokens = o.microBatchSize * o.sequenceLen;
  const activationBytes = 4 * tokens * (L * (perTokenLayer + attnPerToken) + 3 * h + 2 * V);

  const totalBytes = baseBytes + adapterBytes + gradBytes + optimizerBytes + activationBytes;
  return { baseBytes, adapterBytes, gradBytes, optimizerBytes, activationBytes, totalBytes };
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
