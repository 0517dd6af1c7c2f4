// PEFT LoRA adapter folder -> GGUF LoRA adapter that llama.cpp loads with `--lora`, as llama.cpp's
// convert_lora_to_gguf.py writes it: GGUF v3, general.type=adapter, adapter.type=lora, adapter.lora.alpha,
// tensors `blk.{i}.attn_q.weight.lora_a` [ne: in, r] / `.lora_b` [ne: r, out], q/k lora_b rows permuted for ggml's RoPE.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { GGMLFileQuantizationType, GGMLQuantizationType, GGUFValueType, serializeGgufMetadata, type GGUFTypedMetadata } from '@huggingface/gguf';
import { encodeFloats, SafetensorsFile } from '../model/safetensors.ts';
import type { LinearName } from '../model/types.ts';
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
const GGUF_ARCH: Record<string, { arch: string; permuteQK: boolean }> = {
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

const PEFT_KEY = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_(A|B)\.weight$/;

/** `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` -> layer 3, q_proj, A; null for any other key. */
export function parsePeftKey(key: string): { layer: number; proj: LinearName; part: 'A' | 'B' } | null {
  const m = PEFT_KEY.exec(key);
  return m ? { layer: Number(m[1]), proj: m[3] as LinearName, part: m[4] as 'A' | 'B' } : null;
}

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
  const cfgFile = path.join(opts.adapterDir, 'adapter_config.json');
  const lcfg = await readJson(cfgFile);
  if (lcfg.peft_type !== undefined && lcfg.peft_type !== 'LORA') throw new FtError(`${cfgFile}: peft_type is ${JSON.stringify(lcfg.peft_type)}, expected "LORA"`);
  if (typeof lcfg.lora_alpha !== 'number' || !(lcfg.lora_alpha > 0)) throw new FtError(`${cfgFile}: lora_alpha must be a positive number`);
  if (lcfg.alpha_pattern && Object.keys(lcfg.alpha_pattern as object).length) {
    throw new FtError(`${cfgFile}: alpha_pattern is not expressible in GGUF (one adapter.lora.alpha per file)`);
  }
  if (lcfg.fan_in_fan_out) throw new FtError(`${cfgFile}: fan_in_fan_out=true is for Conv1D models, not Llama`);

  const baseDir = opts.baseDir ?? (typeof lcfg.base_model_name_or_path === 'string' ? lcfg.base_model_name_or_path : undefined);
  const baseCfgFile = baseDir ? path.resolve(opts.adapterDir, baseDir, 'config.json') : undefined;
  if (!baseCfgFile || !(await exists(baseCfgFile))) {
    throw new FtError(`${cfgFile}: base model config not found (${baseCfgFile ?? 'no base_model_name_or_path'}); pass --base DIR with the base model's config.json`);
  }
  const base = await readJson(baseCfgFile);
  const hfArch = Array.isArray(base.architectures) ? String(base.architectures[0]) : '';
  const target = GGUF_ARCH[hfArch];
  if (!target) throw new FtError(`${baseCfgFile}: architectures[0] is ${JSON.stringify(hfArch)}, expected one of ${Object.keys(GGUF_ARCH).join(', ')}`);
  const nHead = positiveInt(base.num_attention_heads, baseCfgFile, 'num_attention_heads');
  const nKvHead = base.num_key_value_heads === undefined ? nHead : positiveInt(base.num_key_value_heads, baseCfgFile, 'num_key_value_heads');

  const stFile = path.join(opts.adapterDir, 'adapter_model.safetensors');
  const st = await SafetensorsFile.open(stFile);
  const tensors: GgufTensor[] = [];
  const ranks = new Set<number>();
  try {
    const pairs = new Map<string, { A?: string; B?: string }>();
    for (const key of st.names()) {
      const k = parsePeftKey(key);
      if (!k) throw new FtError(`${stFile}: tensor '${key}' is not a LoRA A/B weight of a decoder projection (embeddings and lm_head adapters are not supported in GGUF export)`);
      const baseName = `blk.${k.layer}.${GGUF_PROJ_NAME[k.proj]}.weight`;
      const p = pairs.get(baseName) ?? {};
      p[k.part] = key;
      pairs.set(baseName, p);
    }
    if (pairs.size === 0) throw new FtError(`${stFile}: no LoRA tensors`);
    for (const [name, p] of pairs) {
      if (!p.A || !p.B) throw new FtError(`${stFile}: '${name}' has lora_${p.A ? 'A' : 'B'} but no lora_${p.A ? 'B' : 'A'}`);
      const a = await st.read(p.A); // [r, in]
      const b = await st.read(p.B); // [out, r]
      if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[1]) {
        throw new FtError(`${stFile}: '${p.A}' [${a.shape}] and '${p.B}' [${b.shape}] are not [r, in] and [out, r]`);
      }
      const [r, inF] = a.shape;
      const outF = b.shape[0];
      ranks.add(r);
      let bData = b.data;
      if (target.permuteQK && name.endsWith('attn_q.weight')) bData = permuteRope(bData, outF, r, nHead);
      if (target.permuteQK && name.endsWith('attn_k.weight')) bData = permuteRope(bData, outF, r, nKvHead);
      tensors.push(ggufTensor(`${name}.lora_a`, a.data, [inF, r], outType));
      tensors.push(ggufTensor(`${name}.lora_b`, bData, [r, outF], outType));
    }
  } finally {
    await st.close();
  }

  // llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r), the same as alpha·sqrt(r) / r
  let alpha = lcfg.lora_alpha as number;
  if (lcfg.use_rslora) {
    if (ranks.size !== 1) throw new FtError(`${cfgFile}: use_rslora with several ranks (rank_pattern) is not expressible in GGUF`);
    alpha *= Math.sqrt([...ranks][0]);
  }
  const kv: GgufKV = {
    'general.architecture': { value: target.arch, type: GGUFValueType.STRING },
    'general.type': { value: 'adapter', type: GGUFValueType.STRING },
    'general.name': { value: opts.name ?? path.basename(path.resolve(opts.adapterDir)), type: GGUFValueType.STRING },
    'general.file_type': { value: outType === 'f16' ? GGMLFileQuantizationType.F16 : GGMLFileQuantizationType.F32, type: GGUFValueType.UINT32 },
    'general.quantization_version': { value: 2, type: GGUFValueType.UINT32 },
    'adapter.type': { value: 'lora', type: GGUFValueType.STRING },
    'adapter.lora.alpha': { value: alpha, type: GGUFValueType.FLOAT32 },
  };
  if (typeof lcfg.base_model_name_or_path === 'string') {
    kv['general.base_model.count'] = { value: 1, type: GGUFValueType.UINT32 };
    kv['general.base_model.0.name'] = { value: lcfg.base_model_name_or_path, type: GGUFValueType.STRING };
  }
  const bytes = await writeGguf(opts.out, kv, tensors);
  return { file: opts.out, arch: target.arch, alpha, tensors: tensors.length, bytes };
}

function ggufTensor(name: string, data: Float32Array, ne: number[], outType: GgufOutType): GgufTensor {
  return outType === 'f16'
    ? { name, ne, type: GGMLQuantizationType.F16, bytes: encodeFloats(data, 'F16') }
    : { name, ne, type: GGMLQuantizationType.F32, bytes: encodeFloats(data, 'F32') };
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new FtError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch (e) {
    throw new FtError(`${file}: expected a JSON object (${(e as Error).message})`);
  }
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}

function positiveInt(v: unknown, file: string, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new FtError(`${file}: ${field} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}
