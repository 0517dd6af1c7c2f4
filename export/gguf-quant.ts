// Tensor data in the GGUF types ft writes: F32, F16, BF16 (round to nearest even, as numpy and ggml convert), and
// ggml's block formats Q8_0 and Q4_0 as llama.cpp's reference quantizer (ggml-quants.c quantize_row_q*_0_ref) makes
// them: 32 values per block, an f16 scale, computed in float32 exactly as the C code does.
import { GGMLFileQuantizationType, GGMLQuantizationType } from '@huggingface/gguf';
import { encodeFloats, f32BitsToF16 } from '../model/safetensors.ts';

export const GGUF_OUT_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const;
export type GgufModelType = (typeof GGUF_OUT_TYPES)[number];

/** What each --outtype stores a tensor as, the general.file_type it declares, and its block (values, bytes). */
export const GGUF_TYPES: Record<
  GgufModelType,
  { ggml: GGMLQuantizationType; fileType: GGMLFileQuantizationType; block: number; blockBytes: number }
> = {
  f32: { ggml: GGMLQuantizationType.F32, fileType: GGMLFileQuantizationType.F32, block: 1, blockBytes: 4 },
  f16: { ggml: GGMLQuantizationType.F16, fileType: GGMLFileQuantizationType.F16, block: 1, blockBytes: 2 },
  bf16: { ggml: GGMLQuantizationType.BF16, fileType: GGMLFileQuantizationType.BF16, block: 1, blockBytes: 2 },
  q8_0: { ggml: GGMLQuantizationType.Q8_0, fileType: GGMLFileQuantizationType.Q8_0, block: 32, blockBytes: 34 },
  q4_0: { ggml: GGMLQuantizationType.Q4_0, fileType: GGMLFileQuantizationType.Q4_0, block: 32, blockBytes: 18 },
};

/** Bytes of `n` values of `type` (n a multiple of its block). */
export function ggufBytes(type: GgufModelType, n: number): number {
  const t = GGUF_TYPES[type];
  return (n / t.block) * t.blockBytes;
}

/** Whether rows of `rowLength` values split into whole blocks of `type`. */
export function fitsBlocks(type: GgufModelType, rowLength: number): boolean {
  return rowLength % GGUF_TYPES[type].block === 0;
}

const f32 = new Float32Array(1);
const f32Bits = new Int32Array(f32.buffer);
/** f16 bits of a float32 value (round to nearest even). */
function f16Of(v: number): number {
  f32[0] = v;
  return f32BitsToF16(f32Bits[0]);
}

/** C's roundf: halves away from zero. */
function roundHalfAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** quantize_row_q8_0_ref: per block d = amax / 127, qs = roundf(x / d); block = f16 d + 32 int8. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(b * 34, f16Of(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(b * 34 + 2 + j, roundHalfAway(Math.fround(x[o + j] * id)));
  }
  return out;
}

/**
 * quantize_row_q4_0_ref: per block d = (the value of largest magnitude, first one on ties) / -8,
 * q = min(15, trunc(x / d + 8.5)); block = f16 d + 16 bytes, byte j = q[j] | q[j + 16] << 4.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  const q = new Uint8Array(32);
  for (let b = 0; b < nb; b++) {
    const o = b * 32;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[o + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    view.setUint16(b * 18, f16Of(d), true);
    for (let j = 0; j < 32; j++) q[j] = Math.min(15, Math.trunc(Math.fround(Math.fround(x[o + j] * id) + 8.5)));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q[j] | (q[j + 16] << 4);
  }
  return out;
}

/** `data` (a multiple of the type's block long) in `type`'s bytes. */
export function encodeGguf(data: Float32Array, type: GgufModelType): Uint8Array {
  switch (type) {
    case 'f32':
      return encodeFloats(data, 'F32');
    case 'f16':
      return encodeFloats(data, 'F16');
    case 'bf16':
      return encodeFloats(data, 'BF16');
    case 'q8_0':
      return quantizeQ8_0(data);
    case 'q4_0':
      return quantizeQ4_0(data);
  }
}
