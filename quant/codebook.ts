// The code values of bitsandbytes' 4-bit (NF4, FP4) and 8-bit dynamic data types, and the nearest-code
// decisions exactly as bitsandbytes' CUDA kernels make them (strict `>` against float32 thresholds).
// Sources (bitsandbytes-foundation/bitsandbytes): csrc/kernels.cu `nf4_dequantization_lut`,
// `fp4_dequantization_lut`, `dQuantizeNF4`, `dQuantizeFP4`, `dQuantize<0>`; bitsandbytes/functional.py
// `get_4bit_type`, `create_dynamic_map`.

const f32 = Math.fround;

/** NF4 (QLoRA, Dettmers et al. 2023): quantiles of N(0,1) scaled to [-1, 1], index = 4-bit code. csrc/kernels.cu nf4_dequantization_lut. */
export const NF4_CODE = new Float32Array([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * dQuantizeNF4's decision thresholds, ascending: code = number of thresholds strictly below x
 * (threshold k lies between NF4_CODE[k] and NF4_CODE[k+1]; a value exactly on it takes the lower code).
 */
const NF4_THRESHOLDS = new Float32Array([
  -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
  -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
  0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]);

/**
 * FP4 (1 sign, 2 exponent, 1 mantissa bit, bnb's layout): bit 3 is the sign, bits 0-2 index
 * fp4_dequantization_lut = [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 (get_4bit_type('fp4')).
 */
const FP4_MAGNITUDE = [0, 0.0625 / 12, 8 / 12, 1, 4 / 12, 6 / 12, 2 / 12, 3 / 12].map(f32);
export const FP4_CODE = new Float32Array(16).map((_, i) => (i & 8 ? -FP4_MAGNITUDE[i & 7] : FP4_MAGNITUDE[i & 7]) + 0); // code 8 is +0 as in get_4bit_type

/** dQuantizeFP4's thresholds on |x| (as written in the kernel), ascending, and the 3-bit code of each magnitude rank. */
const FP4_THRESHOLDS = new Float32Array([
  0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333,
]);
const FP4_RANK_BITS = [0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011];

/** 4-bit code of a value already scaled to [-1, 1] (x = w / absmax as float32); NaN gives 0 as in the kernel. */
export function quantizeNF4(x: number): number {
  const t = NF4_THRESHOLDS;
  // the kernel's balanced decision tree: 4 comparisons
  let i = x > t[7] ? 8 : 0;
  if (x > t[i + 3]) i += 4;
  if (x > t[i + 1]) i += 2;
  if (x > t[i]) i += 1;
  return i;
}

export function quantizeFP4(x: number): number {
  const sign = x < 0 ? 0b1000 : 0;
  const a = Math.abs(x);
  const t = FP4_THRESHOLDS;
  let r = 0;
  while (r < 7 && a > t[r]) r++;
  return FP4_RANK_BITS[r] + sign;
}

/**
 * torch.linspace(start, end, steps) in float32 bit for bit as torch's CPU kernel computes it (checked against
 * torch 1.13, AVX2): value i is start + step*i below steps/2, else end - step*(steps-1-i), each rounded once
 * (fused multiply-add); but in runs of two 8-lane vectors only each vector's first lane is computed so and
 * lane j is then base + j*step, rounded twice; the remaining tail is scalar.
 */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const one = (i: number) => f32(i < half ? s + step * i : e - step * (steps - i - 1));
  const out = new Float32Array(steps);
  const lanes = 8;
  let i = 0;
  const vector = (v: number) => {
    const base = one(v);
    for (let j = 0; j < lanes; j++) out[v + j] = f32(base + f32(j * step));
  };
  for (; i + 2 * lanes <= steps; i += 2 * lanes) {
    vector(i);
    vector(i + lanes);
  }
  for (; i < steps; i++) out[i] = one(i);
  return out;
}

/**
 * create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 ascending float32 values in
 * [-0.99297, 1] (Dettmers 2015, "8-bit approximations"); the 8-bit type bnb uses for quantize_blockwise
 * and for double-quantized absmax.
 */
export function dynamicMap(): Float32Array {
  const maxExponentBits = 7;
  const data: number[] = [];
  for (let i = 0; i < maxExponentBits; i++) {
    const boundaries = linspaceF32(0.1, 1, 2 ** i + 1);
    const scale = f32(10 ** (-(maxExponentBits - 1) + i));
    for (let j = 0; j + 1 < boundaries.length; j++) {
      const mean = f32(f32(boundaries[j] + boundaries[j + 1]) / 2);
      data.push(f32(scale * mean), f32(-scale * mean));
    }
  }
  data.push(0, 1);
  return new Float32Array(data).sort();
}

/** The dynamic map, built once. */
export const DYNAMIC_CODE: Float32Array = dynamicMap();

/**
 * Index of the nearest entry of a sorted 256-entry code (bnb's dQuantize<0>): a 7-step binary search,
 * then the float32 midpoint between the two candidates decides; a value exactly on a midpoint takes the
 * last pivot of the search.
 */
export function quantizeDynamic(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot];
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upperPivot === 255) upper = code[255];
  if (lowerPivot === 0) lower = code[0];
  if (x > val) return x > f32(f32(upper + val) * 0.5) ? upperPivot : pivot;
  return x < f32(f32(lower + val) * 0.5) ? lowerPivot : pivot;
}
