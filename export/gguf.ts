// PEFT LoRA adapter folder -> GGUF LoRA adapter that llama.cpp loads with `--lora`, as llama.cpp's
// convert_lora_to_gguf.py writes it: GGUF v3, general.type=adapter, adapter.type=lora, adapter.lora.alpha,
// tensors `blk.{i}.attn_q.weight.lora_a` [ne: in, r] / `.lora_b` [ne: r, out], q/k lora_b rows permuted for ggml's RoPE.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { GGMLFileQuantizationType, GGMLQuantizationType, GGUFValueType, serializeGgufMetadata, type GGUFTypedMetadata } from '@huggingface/gguf';
import { ADAPTER_CONFIG, readPeftAdapter } from '../adapters/peft.ts';
import { encodeFloats } from '../model/safetensors.ts';
import { readConfig } from '../model/config.ts';
import type { Architecture, LinearName } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { tempPathFor } from '../util/fs.ts';

export type GgufOutType = 'f32' | 'f16';

/** llama.cpp's tensor names (gguf-py MODEL_TENSOR for LLM_ARCH_LLAMA / QWEN2) for each Hugging Face projection. */
export const GGUF_PROJ_NAME: Record<LinearName, string> = {
  q_proj: 'attn_q',
  k_proj: 'attn_k',
  v_proj: 'attn_v',
  o_proj: 'attn_output',
  gate_proj: 'ffn_gate',
  up_proj: 'ffn_up',
  down_proj: 'ffn_down',
};

/** gguf `general.architecture` per Hugging Face architecture, and whether the converter permutes q/k rows (LlamaModel.permute). */
const GGUF_ARCH: Record<Architecture, { arch: string; permuteQK: boolean }> = {
  LlamaForCausalLM: { arch: 'llama', permuteQK: true },
  MistralForCausalLM: { arch: 'llama', permuteQK: true },
  Qwen2ForCausalLM: { arch: 'qwen2', permuteQK: false },
};

export const GGUF_DEFAULT_ALIGNMENT = 32;

/** One tensor as GGUF stores it: `ne` is ggml's dimension order (fastest-varying first = reversed PyTorch shape). */
export interface GgufTensor {
  name: string;
  ne: number[];
  type: GGMLQuantizationType.F32 | GGMLQuantizationType.F16;
  bytes: Uint8Array;
}

export type GgufKV = Record<string, { value: string | number | boolean | bigint; type: GGUFValueType }>;

/**
 * Writes a GGUF v3 file atomically: header + KV (serialized by @huggingface/gguf), tensor infos, padding to
 * `alignment`, then each tensor's data at an aligned offset. Tensor infos and data are written here because
 * @huggingface/gguf only serializes the metadata section.
 */
export async function writeGguf(file: string, kv: GgufKV, tensors: GgufTensor[], alignment = GGUF_DEFAULT_ALIGNMENT): Promise<number> {
  const typed = {
    version: { value: 3, type: GGUFValueType.UINT32 },
    tensor_count: { value: BigInt(tensors.length), type: GGUFValueType.UINT64 },
    kv_count: { value: BigInt(Object.keys(kv).length), type: GGUFValueType.UINT64 },
    ...kv,
  } as GGUFTypedMetadata;
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) typed['general.alignment'] = { value: alignment, type: GGUFValueType.UINT32 };
  // alignment 1 = no trailing padding, so the tensor infos follow the KV pairs directly
  const head = serializeGgufMetadata(typed, { alignment: 1 });

  const pad = (n: number) => Math.ceil(n / alignment) * alignment;
  const enc = new TextEncoder();
  const infos: Buffer[] = [];
  let dataOffset = 0;
  for (const t of tensors) {
    const name = enc.encode(t.name);
    const info = Buffer.alloc(8 + name.length + 4 + 8 * t.ne.length + 4 + 8);
    let o = info.writeBigUInt64LE(BigInt(name.length), 0);
    info.set(name, o);
    o = info.writeUInt32LE(t.ne.length, o + name.length);
    for (const n of t.ne) o = info.writeBigUInt64LE(BigInt(n), o);
    o = info.writeUInt32LE(t.type, o);
    info.writeBigUInt64LE(BigInt(dataOffset), o);
    infos.push(info);
    dataOffset = pad(dataOffset + t.bytes.length);
  }
  const headerLen = head.length + infos.reduce((s, b) => s + b.length, 0);
  const dataStart = pad(headerLen);

  const tmp = tempPathFor(file);
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const fh = await fsp.open(tmp, 'w');
  try {
    let pos = 0;
    const put = async (b: Uint8Array) => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    await put(head);
    for (const b of infos) await put(b);
    await put(new Uint8Array(dataStart - headerLen));
    for (const t of tensors) {
      await put(t.bytes);
      await put(new Uint8Array(pad(pos - dataStart) - (pos - dataStart)));
    }
    await fh.close();
    await fsp.rename(tmp, file);
    return pos;
  } catch (e) {
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/**
 * convert_hf_to_gguf's LlamaModel.permute on the rows of a [rows, cols] matrix: within each of `nHead` heads,
 * Hugging Face's rotate-half row order (j, j + d/2) becomes ggml's interleaved pairs (2j, 2j+1).
 */
export function permuteRope(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const headDim = rows / nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new FtError(`cannot split ${rows} rows into ${nHead} heads of even size for the RoPE permutation`);
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

/** Position of a canonical PEFT key (`base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`), as readPeftAdapter returns them. */
const PEFT_KEY = /^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_(A|B)\.weight$/;

export interface GgufLoraOptions {
  /** PEFT adapter folder: adapter_config.json + adapter_model.safetensors. */
  adapterDir: string;
  out: string;
  outType?: GgufOutType;
  /** Folder with the base model's config.json; default: adapter_config.json's base_model_name_or_path when it is a local folder. */
  baseDir?: string;
  /** general.name; default: the adapter folder's name. */
  name?: string;
}

export interface GgufLoraResult {
  file: string;
  arch: string;
  alpha: number;
  tensors: number;
  bytes: number;
}

/** Converts a PEFT LoRA adapter folder to a GGUF LoRA adapter; nothing is written unless every check passes. */
export async function exportLoraGguf(opts: GgufLoraOptions): Promise<GgufLoraResult> {
  const outType = opts.outType ?? 'f32';
  const adapter = await readPeftAdapter(opts.adapterDir);
  const cfgFile = path.join(opts.adapterDir, ADAPTER_CONFIG);

  const baseDir = opts.baseDir ?? adapter.baseModel ?? undefined;
  const baseCfgDir = baseDir ? path.resolve(opts.adapterDir, baseDir) : undefined;
  if (!baseCfgDir || !(await exists(path.join(baseCfgDir, 'config.json')))) {
    throw new FtError(`${cfgFile}: base model config not found (${baseCfgDir ? path.join(baseCfgDir, 'config.json') : 'no base_model_name_or_path'}); pass --base DIR with the base model's config.json`);
  }
  const base = await readConfig(baseCfgDir);
  const target = GGUF_ARCH[base.architecture];
  const { numAttentionHeads: nHead, numKeyValueHeads: nKvHead } = base;

  // readPeftAdapter has checked every tensor is a paired A [r, in] / B [out, r] factor under its canonical key
  const tensors: GgufTensor[] = [];
  for (const [key, a] of adapter.tensors) {
    const [, layer, proj, part] = PEFT_KEY.exec(key)!;
    if (part !== 'A') continue;
    const b = adapter.tensors.get(key.replace('lora_A.weight', 'lora_B.weight'))!;
    const name = `blk.${layer}.${GGUF_PROJ_NAME[proj as LinearName]}.weight`;
    const [r, inF] = a.shape;
    const outF = b.shape[0];
    let bData = b.data;
    if (target.permuteQK && proj === 'q_proj') bData = permuteRope(bData, outF, r, nHead);
    if (target.permuteQK && proj === 'k_proj') bData = permuteRope(bData, outF, r, nKvHead);
    tensors.push(ggufTensor(`${name}.lora_a`, a.data, [inF, r], outType));
    tensors.push(ggufTensor(`${name}.lora_b`, bData, [r, outF], outType));
  }

  // llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r), the same as alpha·sqrt(r) / r
  const { alpha: loraAlpha, r, useRslora } = adapter.config;
  const alpha = useRslora ? loraAlpha * Math.sqrt(r) : loraAlpha;
  const kv: GgufKV = {
    'general.architecture': { value: target.arch, type: GGUFValueType.STRING },
    'general.type': { value: 'adapter', type: GGUFValueType.STRING },
    'general.name': { value: opts.name ?? path.basename(path.resolve(opts.adapterDir)), type: GGUFValueType.STRING },
    'general.file_type': { value: outType === 'f16' ? GGMLFileQuantizationType.F16 : GGMLFileQuantizationType.F32, type: GGUFValueType.UINT32 },
    'general.quantization_version': { value: 2, type: GGUFValueType.UINT32 },
    'adapter.type': { value: 'lora', type: GGUFValueType.STRING },
    'adapter.lora.alpha': { value: alpha, type: GGUFValueType.FLOAT32 },
  };
  if (adapter.baseModel) {
    kv['general.base_model.count'] = { value: 1, type: GGUFValueType.UINT32 };
    kv['general.base_model.0.name'] = { value: adapter.baseModel, type: GGUFValueType.STRING };
  }
  const bytes = await writeGguf(opts.out, kv, tensors);
  return { file: opts.out, arch: target.arch, alpha, tensors: tensors.length, bytes };
}

function ggufTensor(name: string, data: Float32Array, ne: number[], outType: GgufOutType): GgufTensor {
  return outType === 'f16'
    ? { name, ne, type: GGMLQuantizationType.F16, bytes: encodeFloats(data, 'F16') }
    : { name, ne, type: GGMLQuantizationType.F32, bytes: encodeFloats(data, 'F32') };
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}
