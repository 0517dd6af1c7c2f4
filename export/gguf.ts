// PEFT LoRA adapter folder -> GGUF LoRA adapter that llama.cpp loads with `--lora`, as llama.cpp's
// convert_lora_to_gguf.py writes it: GGUF v3, general.type=adapter, adapter.type=lora, adapter.lora.alpha,
// tensors `blk.{i}.attn_q.weight.lora_a` [ne: in, r] / `.lora_b` [ne: r, out], q/k lora_b rows permuted for ggml's RoPE.
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { GGMLFileQuantizationType, GGMLQuantizationType, GGUFValueType } from '@huggingface/gguf';
import { ADAPTER_CONFIG, readPeftAdapter } from '../adapters/peft.ts';
import { readConfig } from '../model/config.ts';
import { encodeFloats } from '../model/safetensors.ts';
import type { LinearName } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { GGUF_ARCH, GGUF_PROJ_NAME, permuteRope } from './gguf-arch.ts';
import { writeGguf, type GgufKV, type GgufTensor } from './gguf-file.ts';
import { checkAdapterFits } from './merge.ts';

export type GgufOutType = 'f32' | 'f16';

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

  const baseCfgDir = await baseConfigDir(opts.baseDir, adapter.baseModel, opts.adapterDir);
  if (!baseCfgDir) {
    const tried = opts.baseDir ?? adapter.baseModel;
    throw new FtError(
      `${cfgFile}: base model config not found (${tried ? `no config.json in ${tried}` : 'no base_model_name_or_path'}); pass --base DIR with the base model's config.json`,
    );
  }
  const base = await readConfig(baseCfgDir);
  const target = GGUF_ARCH[base.architecture];
  const { numAttentionHeads: nHead, numKeyValueHeads: nKvHead } = base;
  checkAdapterFits(adapter, base);

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
    'general.file_type': {
      value: outType === 'f16' ? GGMLFileQuantizationType.F16 : GGMLFileQuantizationType.F32,
      type: GGUFValueType.UINT32,
    },
    'general.quantization_version': { value: 2, type: GGUFValueType.UINT32 },
    'adapter.type': { value: 'lora', type: GGUFValueType.STRING },
    'adapter.lora.alpha': { value: alpha, type: GGUFValueType.FLOAT32 },
    ...baseModelKV(adapter.baseModel, opts.adapterDir),
  };
  const bytes = await writeGguf(opts.out, kv, tensors);
  return { file: opts.out, arch: target.arch, alpha, tensors: tensors.length, bytes };
}

/** `--base` as given (relative to the working folder), else base_model_name_or_path as given or relative to the adapter folder. */
async function baseConfigDir(
  baseDir: string | undefined,
  baseModel: string | null,
  adapterDir: string,
): Promise<string | null> {
  const candidates = baseDir ? [baseDir] : baseModel ? [baseModel, path.resolve(adapterDir, baseModel)] : [];
  for (const dir of candidates) if (await exists(path.join(dir, 'config.json'))) return dir;
  return null;
}

/** A Hugging Face Hub repo id (`name` or `org/name`), as opposed to a path on this machine. */
const HUB_ID = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

/**
 * general.base_model.* for a base named by its Hub id; nothing for a local folder, whose path means nothing on
 * another machine (and would leak this one's layout into a file meant to be shared).
 */
export function baseModelKV(baseModel: string | null, adapterDir: string): GgufKV {
  if (!baseModel || !HUB_ID.test(baseModel) || existsSync(baseModel) || existsSync(path.resolve(adapterDir, baseModel)))
    return {};
  return {
    'general.base_model.count': { value: 1, type: GGUFValueType.UINT32 },
    'general.base_model.0.name': { value: baseModel, type: GGUFValueType.STRING },
  };
}

function ggufTensor(name: string, data: Float32Array, ne: number[], outType: GgufOutType): GgufTensor {
  const dtype = outType === 'f16' ? 'F16' : 'F32';
  const bytes = encodeFloats(data, dtype);
  return {
    name,
    ne,
    type: outType === 'f16' ? GGMLQuantizationType.F16 : GGMLQuantizationType.F32,
    nbytes: bytes.length,
    bytes,
  };
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}
