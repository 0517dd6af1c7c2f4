// Shapes of the model as the rest of ft sees it. model/llama.ts runs it; quant/ and adapters/ swap its Linear layers.
import type * as tf from '@tensorflow/tfjs';
import type { Linear } from './linear.ts';

export type Architecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';

export interface RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** config.json of a Llama-family model, in camelCase; `raw` keeps the original JSON to write back unchanged. */
export interface LlamaConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number; // hidden_size / num_attention_heads unless head_dim is given
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  vocabSize: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  attentionBias: boolean; // q/k/v biases (Qwen2, or Llama attention_bias)
  bosTokenId: number | null;
  eosTokenIds: number[];
  raw: Record<string, unknown>;
}

/** The projections of one decoder block, by the names Hugging Face and PEFT use. */
export const ATTN_PROJ = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const MLP_PROJ = ['gate_proj', 'up_proj', 'down_proj'] as const;
export const LINEAR_NAMES = [...ATTN_PROJ, ...MLP_PROJ] as const;
export type LinearName = (typeof LINEAR_NAMES)[number];

/** Hugging Face tensor name prefix of a projection: `model.layers.{i}.self_attn.q_proj` or `model.layers.{i}.mlp.up_proj`. */
export function hfModuleName(layer: number, proj: LinearName): string {
  const group = (ATTN_PROJ as readonly string[]).includes(proj) ? 'self_attn' : 'mlp';
  return `model.layers.${layer}.${group}.${proj}`;
}

export interface LlamaLayer {
  inputLayernorm: tf.Tensor1D; // [hidden]
  postAttentionLayernorm: tf.Tensor1D; // [hidden]
  /** Mutable so adapters can wrap a projection in place. */
  proj: Record<LinearName, Linear>;
}

export interface LlamaWeights {
  config: LlamaConfig;
  embedTokens: tf.Tensor2D; // [vocab, hidden]
  layers: LlamaLayer[];
  norm: tf.Tensor1D; // [hidden]
  /** null when tie_word_embeddings: logits = h embedTokens^T */
  lmHead: Linear | null;
}

/**
 * Token rows as the forward pass takes them; every array is [B*T], row-major.
 * `segments` says which example a token belongs to within its row (1, 2, ... when packed; 0 = padding):
 * attention is causal and never crosses segments. `positions` is the RoPE position of each token within
 * its own example, restarting at 0 for each packed example (padding: 0).
 */
export interface TokenBatch {
  B: number;
  T: number;
  ids: Int32Array;
  segments: Int32Array;
  positions: Int32Array;
}

/** A training batch: labels are the token ids to predict at each position's next step, -100 = ignored. */
export interface TrainBatch extends TokenBatch {
  labels: Int32Array;
}

export const IGNORE_INDEX = -100;

/** Rows of logits the training loss makes at a time under gradient checkpointing (model/llama.ts trainingLoss). */
export const LOSS_CHUNK_ROWS = 256;
