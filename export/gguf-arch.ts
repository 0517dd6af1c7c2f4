// How llama.cpp names and lays out a Llama-family model: its architecture string, tensor names (gguf-py's
// MODEL_TENSOR for LLM_ARCH_LLAMA / QWEN2), and the q/k row permutation its converter applies for `llama`.
import type { Architecture, LinearName, LlamaConfig } from '../model/types.ts';
import { FtError } from '../util/errors.ts';

/** llama.cpp's tensor names for each Hugging Face projection. */
export const GGUF_PROJ_NAME: Record<LinearName, string> = {
  q_proj: 'attn_q',
  k_proj: 'attn_k',
  v_proj: 'attn_v',
  o_proj: 'attn_output',
  gate_proj: 'ffn_gate',
  up_proj: 'ffn_up',
  down_proj: 'ffn_down',
};

/**
 * gguf `general.architecture` per Hugging Face architecture, and whether the converter permutes q/k rows
 * (LlamaModel.permute: llama.cpp's `llama` RoPE rotates interleaved pairs; qwen2's rotates halves, as HF does).
 */
export const GGUF_ARCH: Record<Architecture, { arch: string; permuteQK: boolean }> = {
  LlamaForCausalLM: { arch: 'llama', permuteQK: true },
  MistralForCausalLM: { arch: 'llama', permuteQK: true },
  Qwen2ForCausalLM: { arch: 'qwen2', permuteQK: false },
};

const LAYER_TENSOR = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.(weight|bias)$/;
const NORMS: Record<string, string> = { input_layernorm: 'attn_norm', post_attention_layernorm: 'ffn_norm' };

/** The GGUF name of a Hugging Face checkpoint tensor (`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`). */
export function ggufTensorName(hfName: string): string {
  if (hfName === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hfName === 'model.norm.weight') return 'output_norm.weight';
  if (hfName === 'lm_head.weight') return 'output.weight';
  const proj = LAYER_TENSOR.exec(hfName);
  if (proj && proj[2] in GGUF_PROJ_NAME) return `blk.${proj[1]}.${GGUF_PROJ_NAME[proj[2] as LinearName]}.${proj[3]}`;
  const norm = /^model\.layers\.(\d+)\.(\w+)\.weight$/.exec(hfName);
  if (norm && norm[2] in NORMS) return `blk.${norm[1]}.${NORMS[norm[2]]}.weight`;
  throw new FtError(`tensor '${hfName}' has no llama.cpp name`);
}

/** Heads to permute the rows of a q or k projection tensor by (weight or bias), or null when it stays as it is. */
export function ropePermuteHeads(config: LlamaConfig, hfName: string): number | null {
  if (!GGUF_ARCH[config.architecture].permuteQK) return null;
  if (/\.q_proj\.(weight|bias)$/.test(hfName)) return config.numAttentionHeads;
  if (/\.k_proj\.(weight|bias)$/.test(hfName)) return config.numKeyValueHeads;
  return null;
}

/**
 * convert_hf_to_gguf's LlamaModel.permute on the rows of a [rows, cols] matrix: within each of `nHead` heads,
 * Hugging Face's rotate-half row order (j, j + d/2) becomes ggml's interleaved pairs (2j, 2j+1).
 */
export function permuteRope(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const headDim = rows / nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0)
    throw new FtError(`cannot split ${rows} rows into ${nHead} heads of even size for the RoPE permutation`);
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHead; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const src = (h * headDim + s * half + j) * cols;
        out.set(w.subarray(src, src + cols), (h * headDim + 2 * j + s) * cols);
      }
    }
  }
  return out;
}
