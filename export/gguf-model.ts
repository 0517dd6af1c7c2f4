// A whole model as one GGUF file that llama.cpp, Ollama and LM Studio run: the base, or the base with a LoRA adapter
// merged in (W + scale·B·A, export/merge.ts), laid out as llama.cpp's convert_hf_to_gguf.py lays it out: llama.cpp
// tensor names, q/k rows permuted for the `llama` architecture, 1-D tensors in F32, the rest in --outtype (a row
// that does not split into 32-value blocks falls back to F16, as the converter does), llama3 RoPE scaling as the
// `rope_freqs` factors tensor, and the tokenizer. Tensors stream from the model folder one at a time.
import * as path from 'node:path';
import { GGMLQuantizationType, GGUFValueType } from '@huggingface/gguf';
import { readPeftAdapter } from '../adapters/peft.ts';
import { openModelDir } from '../model/load.ts';
import { ropeInvFreq } from '../model/llama.ts';
import { numel } from '../model/safetensors.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import type { LlamaConfig } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { GGUF_ARCH, ggufTensorName, permuteRope, ropePermuteHeads } from './gguf-arch.ts';
import { writeGguf, type GgufKV, type GgufTensor } from './gguf-file.ts';
import { encodeGguf, fitsBlocks, GGUF_TYPES, ggufBytes, type GgufModelType } from './gguf-quant.ts';
import { tokenizerKV } from './gguf-vocab.ts';
import { checkAdapterFits, mergedTensorsFromDir, type ExportTensor } from './merge.ts';

export interface GgufModelOptions {
  /** Base model folder (config.json, safetensors, tokenizer.json). */
  model: string;
  /** PEFT adapter folder to merge in. */
  adapter?: string | null;
  out: string;
  outType?: GgufModelType;
  /** general.name; default: the output file's name without .gguf. */
  name?: string;
}

export interface GgufModelResult {
  file: string;
  arch: string;
  outType: GgufModelType;
  tensors: number;
  bytes: number;
  /** Tensors kept in F16 because their rows do not split into the quantized type's blocks. */
  f16Fallbacks: string[];
}

const u32 = (value: number) => ({ value, type: GGUFValueType.UINT32 });
const f32 = (value: number) => ({ value, type: GGUFValueType.FLOAT32 });

/** The `{arch}.*` hyper-parameters llama.cpp reads for a Llama-family model. */
export function hyperparameterKV(c: LlamaConfig, arch: string): GgufKV {
  const kv: GgufKV = {
    [`${arch}.context_length`]: u32(c.maxPositionEmbeddings),
    [`${arch}.embedding_length`]: u32(c.hiddenSize),
    [`${arch}.block_count`]: u32(c.numHiddenLayers),
    [`${arch}.feed_forward_length`]: u32(c.intermediateSize),
    [`${arch}.attention.head_count`]: u32(c.numAttentionHeads),
    [`${arch}.attention.head_count_kv`]: u32(c.numKeyValueHeads),
    [`${arch}.rope.freq_base`]: f32(c.ropeTheta),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f32(c.rmsNormEps),
    [`${arch}.vocab_size`]: u32(c.vocabSize),
    [`${arch}.rope.dimension_count`]: u32(c.headDim),
  };
  if (c.headDim !== c.hiddenSize / c.numAttentionHeads) {
    kv[`${arch}.attention.key_length`] = u32(c.headDim);
    kv[`${arch}.attention.value_length`] = u32(c.headDim);
  }
  return kv;
}

/**
 * llama3 RoPE scaling as llama.cpp takes it: `rope_freqs.weight`, one factor per frequency that the plain
 * theta^(-2i/d) is divided by (what the converter computes from rope_scaling); the same frequencies ft's RoPE uses.
 */
export function ropeFreqFactors(c: LlamaConfig): Float32Array {
  const plain = ropeInvFreq({ ...c, ropeScaling: null });
  const scaled = ropeInvFreq(c);
  return Float32Array.from(plain, (f, i) => f / scaled[i]);
}

/** The GGUF tensor for one exported tensor: its type by --outtype and shape, q/k rows permuted when the arch needs it. */
function ggufTensor(
  t: ExportTensor,
  c: LlamaConfig,
  outType: GgufModelType,
  source: string,
  fallbacks: string[],
): GgufTensor {
  const name = ggufTensorName(t.name);
  const ne = [...t.shape].reverse();
  let type: GgufModelType = t.shape.length === 1 ? 'f32' : outType;
  if (!fitsBlocks(type, ne[0])) {
    type = 'f16';
    fallbacks.push(name);
  }
  const n = numel(t.shape);
  const heads = ropePermuteHeads(c, t.name);
  return {
    name,
    ne,
    type: GGUF_TYPES[type].ggml,
    nbytes: ggufBytes(type, n),
    bytes: async () => {
      let data = await t.data();
      if (data.length !== n)
        throw new FtError(
          `${source}: tensor '${t.name}' has ${data.length} values, but config.json's shape is [${t.shape}]`,
        );
      if (heads !== null) data = permuteRope(data, t.shape[0], t.shape.length === 2 ? t.shape[1] : 1, heads);
      return encodeGguf(data, type);
    },
  };
}

/** `ft export gguf --model`: writes the model (merged with `adapter` when given) as one GGUF file, atomically. */
export async function exportModelGguf(opts: GgufModelOptions): Promise<GgufModelResult> {
  const outType = opts.outType ?? 'f16';
  if (!(outType in GGUF_TYPES))
    throw new FtError(`--outtype: ${JSON.stringify(outType)} is not one of ${Object.keys(GGUF_TYPES).join(', ')}`);
  const adapter = opts.adapter ? await readPeftAdapter(opts.adapter) : null;
  const tokenizer = await loadTokenizer(opts.model);
  const model = await openModelDir(opts.model);
  try {
    const c = model.config;
    if (adapter) checkAdapterFits(adapter, c);
    const { arch } = GGUF_ARCH[c.architecture];
    const kv: GgufKV = {
      'general.architecture': { value: arch, type: GGUFValueType.STRING },
      'general.type': { value: 'model', type: GGUFValueType.STRING },
      'general.name': {
        value: opts.name ?? path.basename(opts.out).replace(/\.gguf$/i, ''),
        type: GGUFValueType.STRING,
      },
      'general.file_type': u32(GGUF_TYPES[outType].fileType),
      'general.quantization_version': u32(2),
      ...hyperparameterKV(c, arch),
      ...tokenizerKV(tokenizer, c.vocabSize, opts.model),
    };
    const fallbacks: string[] = [];
    const tensors = mergedTensorsFromDir(model, adapter).map((t) => ggufTensor(t, c, outType, opts.model, fallbacks));
    if (c.ropeScaling) {
      const factors = new Uint8Array(ropeFreqFactors(c).buffer);
      tensors.push({
        name: 'rope_freqs.weight',
        ne: [c.headDim / 2],
        type: GGMLQuantizationType.F32,
        nbytes: factors.length,
        bytes: factors,
      });
    }
    const bytes = await writeGguf(opts.out, kv, tensors, { progressLabel: 'writing' });
    return { file: opts.out, arch, outType, tensors: tensors.length, bytes, f16Fallbacks: fallbacks };
  } finally {
    await model.close();
  }
}
