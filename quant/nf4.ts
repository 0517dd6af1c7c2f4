// Blockwise quantization of a float32 weight exactly as bitsandbytes does it (functional.py quantize_4bit /
// dequantize_4bit / quantize_blockwise, csrc/kernels.cu kQuantizeBlockwise): the flattened row-major tensor
// is cut into blocks of `blockSize` consecutive values (the last block may be shorter), each block is scaled
// by 1/absmax and every value replaced by the index of its nearest code. 4-bit codes are packed two per
// byte, the first value in the high nibble. With double quantization (QLoRA's "compress_statistics") the
// float32 absmax constants themselves are quantized: offset = mean(absmax), then absmax - offset is
// 8-bit blockwise quantized with the dynamic map in blocks of 256.
// Backend-free: typed arrays only, tight loops, no per-element allocation.
import type { FourBitCodes } from '../engine/four-bit.ts';
import { FtError } from '../util/errors.ts';
import { torchSumF32 } from './f32sum.ts';
import { DYNAMIC_CODE, FP4_CODE, NF4_CODE, quantizeDynamic, quantizeFP4, quantizeNF4 } from './codebook.ts';

const f32 = Math.fround;

export const QUANT_KINDS = ['nf4', 'fp4', 'int8'] as const;
export type QuantKind = (typeof QUANT_KINDS)[number];

/** Block sizes bitsandbytes' kernels accept. */
export const BLOCK_SIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096] as const;
/** Default block size: 64 for 4-bit (QLoRA), 4096 for 8-bit (quantize_blockwise). */
export const DEFAULT_BLOCK_SIZE: Record<QuantKind, number> = { nf4: 64, fp4: 64, int8: 4096 };
/** Block size of the second-level (absmax) quantization, fixed in bnb. */
export const NESTED_BLOCK_SIZE = 256;

/** Absmax constants quantized to 8 bits: absmax[k] = DYNAMIC_CODE[codes[k]] * absmax2[k / 256] + offset. */
export interface DoubleQuantized {
  codes: Uint8Array; // [nBlocks]
  absmax: Float32Array; // [ceil(nBlocks / 256)]
  offset: number; // float32
}

/** A quantized [out, in] weight. `codes`: 4-bit kinds hold ceil(n/2) bytes (high nibble first), int8 holds n bytes. */
export interface QuantizedTensor {
  kind: QuantKind;
  shape: [number, number];
  blockSize: number;
  codes: Uint8Array;
  /** One scale per block: float32, or double quantized. */
  absmax: Float32Array | DoubleQuantized;
}

export interface QuantizeOptions {
  kind?: QuantKind;
  blockSize?: number;
  /** Quantize the absmax constants too (QLoRA double quantization). Default true for nf4/fp4, false for int8. */
  doubleQuant?: boolean;
  /** Tensor name for error messages. */
  name?: string;
}

function checkKind(kind: string): asserts kind is QuantKind {
  if (!(QUANT_KINDS as readonly string[]).includes(kind)) {
    throw new FtError(`unknown quantization kind '${kind}': expected one of ${QUANT_KINDS.join(', ')}`);
  }
}

function checkBlockSize(blockSize: number, what: string): void {
  if (!(BLOCK_SIZES as readonly number[]).includes(blockSize)) {
    throw new FtError(`${what}: block size ${blockSize} is not supported: expected one of ${BLOCK_SIZES.join(', ')}`);
  }
}

/** Quantizes a row-major [out, in] float32 weight. Throws FtError on a shape mismatch or a non-finite weight. */
export function quantize(w: Float32Array, shape: [number, number], opts: QuantizeOptions = {}): QuantizedTensor {
  const kind = opts.kind ?? 'nf4';
  checkKind(kind);
  const what = opts.name ?? 'weight';
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE[kind];
  checkBlockSize(blockSize, what);
  const [rows, cols] = shape;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0 || rows * cols !== w.length) {
    throw new FtError(`${what}: shape [${shape}] does not match ${w.length} values`);
  }
  const bad = w.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new FtError(
      `${what}: non-finite value ${w[bad]} at [${Math.floor(bad / cols)}, ${bad % cols}]: cannot quantize`,
    );
  }
  const { codes, absmax } = kind === 'int8' ? quantizeBlockwise8(w, blockSize) : quantizeBlockwise4(w, blockSize, kind);
  const doubleQuant = opts.doubleQuant ?? kind !== 'int8';
  return { kind, shape: [rows, cols], blockSize, codes, absmax: doubleQuant ? doubleQuantize(absmax) : absmax };
}

/** Largest |x| in x[start, end), as float32 (bnb starts from -FLT_MAX; an empty range never occurs). */
function blockAbsmaxOf(x: Float32Array, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(x[i]);
    if (a > m) m = a;
  }
  return m;
}

/** kQuantizeBlockwise for FP4/NF4: scaled value x * (1/absmax) in float32; an all-zero block gives NaNs, hence code 0, as in bnb. */
function quantizeBlockwise4(
  w: Float32Array,
  blockSize: number,
  kind: 'nf4' | 'fp4',
): { codes: Uint8Array; absmax: Float32Array } {
  const n = w.length;
  const nBlocks = Math.ceil(n / blockSize);
  const absmax = new Float32Array(nBlocks);
  const codes = new Uint8Array(Math.ceil(n / 2));
  const q = kind === 'nf4' ? quantizeNF4 : quantizeFP4;
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, n);
    const m = blockAbsmaxOf(w, start, end);
    absmax[b] = m;
    const inv = f32(1 / m);
    // blockSize is even, so a block starts on a byte boundary; a missing last value is padded with 0
    for (let i = start; i < end; i += 2) {
      const hi = q(f32(w[i] * inv));
      const lo = q(f32((i + 1 < end ? w[i + 1] : 0) * inv));
      codes[i >> 1] = (hi << 4) | lo;
    }
  }
  return { codes, absmax };
}

/** quantize_blockwise with the dynamic map: one byte per value. */
function quantizeBlockwise8(x: Float32Array, blockSize: number): { codes: Uint8Array; absmax: Float32Array } {
  const n = x.length;
  const nBlocks = Math.ceil(n / blockSize);
  const absmax = new Float32Array(nBlocks);
  const codes = new Uint8Array(n);
  for (let b = 0; b < nBlocks; b++) {
    const start = b * blockSize;
    const end = Math.min(start + blockSize, n);
    const m = blockAbsmaxOf(x, start, end);
    absmax[b] = m;
    const inv = f32(1 / m);
    for (let i = start; i < end; i++) codes[i] = quantizeDynamic(DYNAMIC_CODE, f32(x[i] * inv));
  }
  return { codes, absmax };
}

/** offset = absmax.mean() (float32, summed in torch's order), then absmax - offset 8-bit quantized in blocks of 256. */
export function doubleQuantize(absmax: Float32Array): DoubleQuantized {
  const offset = f32(torchSumF32(absmax) / absmax.length);
  const centered = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centered[i] = absmax[i] - offset;
  const { codes, absmax: absmax2 } = quantizeBlockwise8(centered, NESTED_BLOCK_SIZE);
  return { codes, absmax: absmax2, offset };
}

/** absmax of block k, resolving double quantization (dequantize_blockwise then + offset, in float32). */
function scaleOf(absmax: Float32Array | DoubleQuantized, k: number): number {
  if (absmax instanceof Float32Array) return absmax[k];
  return f32(f32(DYNAMIC_CODE[absmax.codes[k]] * absmax.absmax[(k / NESTED_BLOCK_SIZE) | 0]) + absmax.offset);
}

/** Blocks of blockSize values over the flattened weight, the last perhaps partial. */
function blockCount(q: QuantizedTensor): number {
  return Math.ceil((q.shape[0] * q.shape[1]) / q.blockSize);
}

/** The per-block float32 absmax, double quantization resolved: [nBlocks]. */
export function blockScales(q: QuantizedTensor): Float32Array {
  const nBlocks = blockCount(q);
  const out = new Float32Array(nBlocks);
  for (let k = 0; k < nBlocks; k++) out[k] = scaleOf(q.absmax, k);
  return out;
}

/** byte -> [code(high nibble), code(low nibble)]: a 256-entry table so each byte decodes with two loads. */
function pairTable(code: Float32Array): Float32Array {
  const t = new Float32Array(512);
  for (let b = 0; b < 256; b++) {
    t[2 * b] = code[b >> 4];
    t[2 * b + 1] = code[b & 15];
  }
  return t;
}
const PAIRS: Record<'nf4' | 'fp4', Float32Array> = { nf4: pairTable(NF4_CODE), fp4: pairTable(FP4_CODE) };

/** A 4-bit tensor as engine/four-bit.ts unpacks it (int8 has none): its codes, pair table and block scales. */
export function fourBitCodes(q: QuantizedTensor): FourBitCodes | undefined {
  if (q.kind === 'int8') return undefined;
  const { absmax } = q;
  return {
    shape: q.shape,
    codes: q.codes,
    pairs: PAIRS[q.kind],
    blockSize: q.blockSize,
    blocks: blockCount(q),
    scales:
      absmax instanceof Float32Array
        ? absmax
        : {
            codes: absmax.codes,
            table: DYNAMIC_CODE,
            nested: absmax.absmax,
            nestedBlock: NESTED_BLOCK_SIZE,
            offset: absmax.offset,
          },
  };
}

/** The full dequantized weight, row-major [out, in]. */
export function dequantize(q: QuantizedTensor): Float32Array {
  const out = new Float32Array(q.shape[0] * q.shape[1]);
  dequantizeInto(q, 0, out.length, out);
  return out;
}

/** Rows [row0, row1) dequantized into out[0 .. (row1-row0)*in): for just-in-time use with a reused buffer. */
export function dequantizeRows(q: QuantizedTensor, row0: number, row1: number, out: Float32Array): void {
  const cols = q.shape[1];
  if (row0 < 0 || row1 > q.shape[0] || row0 > row1 || out.length < (row1 - row0) * cols) {
    throw new RangeError(`dequantizeRows: rows [${row0}, ${row1}) of [${q.shape}] into ${out.length} values`);
  }
  dequantizeInto(q, row0 * cols, row1 * cols, out);
}

/** Flattened elements [start, end) into out[0 .. end-start), value = code * absmax in float32 as bnb's kernels. */
function dequantizeInto(q: QuantizedTensor, start: number, end: number, out: Float32Array): void {
  if (q.kind !== 'int8') return dequantize4bit(q, start, end, out);
  const { blockSize, codes } = q;
  for (let i = start, o = 0; i < end; ) {
    const block = (i / blockSize) | 0;
    const s = scaleOf(q.absmax, block);
    const stop = Math.min(end, (block + 1) * blockSize);
    for (; i < stop; i++) out[o++] = DYNAMIC_CODE[codes[i]] * s;
  }
}

/** dequantizeInto for 4-bit codes: one scale per block, then a byte (two values) at a time. */
function dequantize4bit(q: QuantizedTensor, start: number, end: number, out: Float32Array): void {
  const { blockSize, codes } = q;
  const pairs = PAIRS[q.kind as 'nf4' | 'fp4'];
  let i = start;
  let o = 0;
  while (i < end) {
    const block = (i / blockSize) | 0;
    const s = scaleOf(q.absmax, block);
    const stop = Math.min(end, (block + 1) * blockSize);
    // a value at an odd index is the low nibble of its byte
    if (i & 1) out[o++] = pairs[(codes[i++ >> 1] << 1) + 1] * s;
    let byte = i >> 1;
    const even = i + ((stop - i) & ~1);
    for (; i < even; i += 2, byte++, o += 2) {
      const p = codes[byte] << 1;
      out[o] = pairs[p] * s;
      out[o + 1] = pairs[p + 1] * s;
    }
    if (i < stop) {
      out[o++] = pairs[codes[byte] << 1] * s;
      i++;
    }
  }
}

/**
 * W x for a 4-bit W [out, in] and one vector x [in], without the float W (one token of decoding): each byte's two
 * codes meet x directly and each block's part of a row is scaled once. Blocks run over the flattened W, so a block may
 * span two rows (in = 288 with blocks of 64); in must be even, so every row starts on a whole byte. Sums run in
 * another order than a matmul of the dequantized W, so results agree to float32 rounding, not bit for bit.
 */
export function matvec4bit(q: QuantizedTensor, x: Float32Array): Float32Array {
  const [outF, inF] = q.shape;
  const { blockSize, codes } = q;
  if (q.kind === 'int8' || inF % 2 !== 0 || x.length !== inF)
    throw new Error(`matvec4bit: a 4-bit [${q.shape}] with an even in_features, and x of ${inF}`);
  const pairs = PAIRS[q.kind];
  const y = new Float32Array(outF);
  const first = inF % blockSize === 0 ? matvecFourRows(q, pairs, x, y) : 0;
  let i = first * inF; // flattened index of the next weight, always even
  for (let o = first; o < outF; o++) {
    const rowEnd = i + inF;
    let acc = 0;
    while (i < rowEnd) {
      const block = (i / blockSize) | 0;
      const stop = Math.min(rowEnd, (block + 1) * blockSize);
      acc += blockDot(codes, pairs, x, i >> 1, i - o * inF, (stop - i) >> 1) * scaleOf(q.absmax, block);
      i = stop;
    }
    y[o] = acc;
  }
  return y;
}

/**
 * matvec4bit's rows four at a time when every row holds whole blocks: each pair of x values is loaded once for four
 * rows (0.50 -> 0.69 GMAC/s on a [2048, 768] weight here), and each row sums in the same order as one row alone, so
 * the results are the same bits. Returns how many rows it did (outF rounded down to a multiple of 4).
 */
function matvecFourRows(q: QuantizedTensor, pairs: Float32Array, x: Float32Array, y: Float32Array): number {
  const [outF, inF] = q.shape;
  const { codes, absmax } = q;
  const rowBytes = inF >> 1;
  const blocksPerRow = inF / q.blockSize;
  const blockBytes = q.blockSize >> 1;
  let o = 0;
  for (; o + 4 <= outF; o += 4) {
    const [r0, r1, r2, r3] = [o * rowBytes, (o + 1) * rowBytes, (o + 2) * rowBytes, (o + 3) * rowBytes];
    let [a0, a1, a2, a3] = [0, 0, 0, 0];
    for (let blk = 0; blk < blocksPerRow; blk++) {
      let [d0, d1, d2, d3] = [0, 0, 0, 0];
      for (let k = blk * blockBytes, end = k + blockBytes; k < end; k++) {
        const x0 = x[2 * k];
        const x1 = x[2 * k + 1];
        let p = codes[r0 + k] << 1;
        d0 += pairs[p] * x0 + pairs[p + 1] * x1;
        p = codes[r1 + k] << 1;
        d1 += pairs[p] * x0 + pairs[p + 1] * x1;
        p = codes[r2 + k] << 1;
        d2 += pairs[p] * x0 + pairs[p + 1] * x1;
        p = codes[r3 + k] << 1;
        d3 += pairs[p] * x0 + pairs[p + 1] * x1;
      }
      const b = o * blocksPerRow + blk;
      a0 += d0 * scaleOf(absmax, b);
      a1 += d1 * scaleOf(absmax, b + blocksPerRow);
      a2 += d2 * scaleOf(absmax, b + 2 * blocksPerRow);
      a3 += d3 * scaleOf(absmax, b + 3 * blocksPerRow);
    }
    [y[o], y[o + 1], y[o + 2], y[o + 3]] = [a0, a1, a2, a3];
  }
  return o;
}

/** Σ over `bytes` bytes from codes[byte]: code_hi·x[j] + code_lo·x[j+1], j stepping by 2 from `j`. */
function blockDot(codes: Uint8Array, pairs: Float32Array, x: Float32Array, byte: number, j: number, bytes: number) {
  let dot = 0;
  for (let k = 0; k < bytes; k++, j += 2) {
    const p = codes[byte + k] << 1;
    dot += pairs[p] * x[j] + pairs[p + 1] * x[j + 1];
  }
  return dot;
}

/** Bytes the quantized tensor occupies as stored (codes + absmax, nested absmax and offset). */
export function quantizedBytes(q: QuantizedTensor): number {
  const a = q.absmax;
  const scales = a instanceof Float32Array ? a.byteLength : a.codes.byteLength + a.absmax.byteLength + 4;
  return q.codes.byteLength + scales;
}

/** Storage bits per weight of a kind, in the large-tensor limit: 4 + 32/64 = 4.5, or 4 + 8/64 + 32/(64*256) ≈ 4.127 with double quant. */
export function bitsPerWeight(
  kind: QuantKind,
  blockSize = DEFAULT_BLOCK_SIZE[kind],
  doubleQuant = kind !== 'int8',
): number {
  checkKind(kind);
  const codeBits = kind === 'int8' ? 8 : 4;
  return codeBits + (doubleQuant ? 8 / blockSize + 32 / (blockSize * NESTED_BLOCK_SIZE) : 32 / blockSize);
}
