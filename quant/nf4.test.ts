import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { DYNAMIC_CODE, FP4_CODE, NF4_CODE } from './codebook.ts';
import {
  bitsPerWeight,
  blockScales,
  dequantize,
  dequantizeRows,
  matvec4bit,
  quantize,
  quantizedBytes,
  type DoubleQuantized,
  type QuantKind,
} from './nf4.ts';
import { Rng } from '../util/rng.ts';
import { torchSumF32 } from './f32sum.ts';

interface RefCase {
  name: string;
  kind: QuantKind;
  shape: [number, number];
  blockSize: number;
  doubleQuant: boolean;
  inputs?: number[];
  generate?: { seed: number; scale: number };
  codes: string;
  absmax: number[] | { codes: string; absmax: number[]; offset: number };
  dequantized?: number[];
  dequantizedSample?: { every: number; values: number[] };
  dequantizedSum: number;
}
const ref = JSON.parse(readFileSync(new URL('../test/fixtures/quant/reference.json', import.meta.url), 'utf8')) as {
  nf4Code: number[];
  fp4Code: number[];
  dynamicCode: number[];
  generateFirst8: number[];
  cases: RefCase[];
};

/** make_reference.py's generate(): Irwin-Hall(4) - 2 from an integer hash, scaled by a power of two. */
function generate(n: number, seed: number, scale: number): Float32Array {
  const fmix32 = (h: number) => {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    return (h ^ (h >>> 16)) >>> 0;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += (fmix32((Math.imul(seed, 0x9e3779b1) + i * 4 + k) >>> 0) >>> 8) / 16777216;
    out[i] = (s - 2) * scale;
  }
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function inputsOf(c: RefCase): Float32Array {
  return c.inputs ? new Float32Array(c.inputs) : generate(c.shape[0] * c.shape[1], c.generate!.seed, c.generate!.scale);
}

function normal(n: number, seed: number, std = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * std);
}

describe('codebooks match bitsandbytes', () => {
  test('NF4, FP4 and the 8-bit dynamic map equal the reference values bit for bit', () => {
    expect(Array.from(NF4_CODE)).toEqual(ref.nf4Code);
    expect(Array.from(FP4_CODE)).toEqual(ref.fp4Code);
    expect(Array.from(DYNAMIC_CODE)).toEqual(ref.dynamicCode);
  });

  test('the input generator matches the reference script', () => {
    expect(Array.from(generate(8, 7, 1 / 32))).toEqual(ref.generateFirst8);
  });
});

describe('quantize/dequantize match the bitsandbytes reference', () => {
  for (const c of ref.cases) {
    test(`${c.name}: codes, absmax and dequantized values`, () => {
      const w = inputsOf(c);
      const q = quantize(w, c.shape, { kind: c.kind, blockSize: c.blockSize, doubleQuant: c.doubleQuant });
      expect(hex(q.codes)).toBe(c.codes);
      if (Array.isArray(c.absmax)) {
        expect(Array.from(q.absmax as Float32Array)).toEqual(c.absmax);
      } else {
        const dq = q.absmax as DoubleQuantized;
        expect(dq.offset).toBe(c.absmax.offset);
        expect(hex(dq.codes)).toBe(c.absmax.codes);
        expect(Array.from(dq.absmax)).toEqual(c.absmax.absmax);
      }
      const d = dequantize(q);
      if (c.dequantized) expect(Array.from(d)).toEqual(c.dequantized);
      if (c.dequantizedSample) {
        const { every, values } = c.dequantizedSample;
        expect(values.map((_, k) => d[k * every])).toEqual(values);
      }
      let sum = 0;
      for (const v of d) sum += v;
      expect(sum).toBeCloseTo(c.dequantizedSum, 9);
    });
  }
});

describe('error bounds', () => {
  // max half-gap between adjacent codes: the worst rounding error of a value scaled to [-1, 1]
  const halfGap = (code: Float32Array) => {
    const s = Array.from(code).sort((a, b) => a - b);
    return Math.max(...s.slice(1).map((v, i) => (v - s[i]) / 2));
  };

  for (const kind of ['nf4', 'fp4'] as const) {
    test(`${kind}: |w - deq(q(w))| <= absmax_block * max half-gap, per block`, () => {
      const [rows, cols] = [37, 130]; // 4810 values: the last block is partial
      const w = normal(rows * cols, 1, 0.02);
      const q = quantize(w, [rows, cols], { kind, doubleQuant: false });
      const d = dequantize(q);
      const scales = blockScales(q);
      const h = halfGap(kind === 'nf4' ? NF4_CODE : FP4_CODE);
      for (let i = 0; i < w.length; i++) {
        const bound = scales[(i / 64) | 0] * h * (1 + 1e-6);
        expect(Math.abs(w[i] - d[i])).toBeLessThanOrEqual(bound);
      }
    });
  }

  test('nf4 with double quant: error within the 4-bit bound plus the absmax quantization error', () => {
    const [rows, cols] = [64, 512]; // 512 blocks, 2 nested blocks
    const w = normal(rows * cols, 2, 0.02);
    const plain = quantize(w, [rows, cols], { doubleQuant: false });
    const q = quantize(w, [rows, cols]);
    const trueAbsmax = plain.absmax as Float32Array;
    const scales = blockScales(q);
    const d = dequantize(q);
    const h = halfGap(NF4_CODE);
    // the 8-bit dynamic map's largest half-gap is below 0.0071 of the nested block absmax
    const dq = q.absmax as DoubleQuantized;
    for (let k = 0; k < scales.length; k++) {
      expect(Math.abs(scales[k] - trueAbsmax[k])).toBeLessThanOrEqual(dq.absmax[k >> 8] * 0.0071 + 1e-9);
    }
    for (let i = 0; i < w.length; i++) {
      const k = (i / 64) | 0;
      const bound = trueAbsmax[k] * h + Math.abs(scales[k] - trueAbsmax[k]) + 1e-7;
      expect(Math.abs(w[i] - d[i])).toBeLessThanOrEqual(bound);
    }
  });

  test('codebook values round-trip exactly: w = absmax * code', () => {
    for (const [kind, code] of [
      ['nf4', NF4_CODE],
      ['fp4', FP4_CODE],
    ] as const) {
      const w = new Float32Array(64 * 3);
      const absmax = [0.5, 0.0390625, 3];
      for (let i = 0; i < w.length; i++) w[i] = code[(i * 7) % 16] * absmax[(i / 64) | 0];
      for (let b = 0; b < 3; b++) w[b * 64] = absmax[b]; // code 1.0 (nf4 15, fp4 3) sets each block's absmax
      const d = dequantize(quantize(w, [3, 64], { kind, doubleQuant: false }));
      expect(Array.from(d).map((v) => v + 0)).toEqual(Array.from(w).map((v) => v + 0));
    }
  });
});

describe('layout and size', () => {
  test('two codes per byte, the first value in the high nibble; an odd tail pads the low nibble with code(0)', () => {
    const q = quantize(new Float32Array([1, -1, 0]), [1, 3], { doubleQuant: false });
    expect(Array.from(q.codes)).toEqual([0xf0, 0x77]);
    expect(Array.from(q.absmax as Float32Array)).toEqual([1]);
  });

  test('an all-zero block dequantizes to zeros', () => {
    const d = dequantize(quantize(new Float32Array(128), [2, 64]));
    expect(d.every((v) => v === 0)).toBe(true);
  });

  test('dequantizeRows equals the matching slice of dequantize, including rows not aligned to blocks or bytes', () => {
    const [rows, cols] = [7, 45]; // row starts fall mid-block and on odd elements
    const w = normal(rows * cols, 3);
    for (const kind of ['nf4', 'fp4', 'int8'] as const) {
      const q = quantize(w, [rows, cols], { kind, blockSize: kind === 'int8' ? 64 : 64 });
      const all = dequantize(q);
      const buf = new Float32Array(3 * cols);
      dequantizeRows(q, 3, 6, buf);
      expect(Array.from(buf)).toEqual(Array.from(all.subarray(3 * cols, 6 * cols)));
      dequantizeRows(q, 1, 2, buf);
      expect(Array.from(buf.subarray(0, cols))).toEqual(Array.from(all.subarray(cols, 2 * cols)));
    }
  });

  test('matvec4bit equals W x of the dequantized W, also where blocks span rows (in = 288, 40 with blocks of 64)', () => {
    for (const [rows, cols, kind, doubleQuant] of [
      [12, 288, 'nf4', true], // llama2.c's dim: 4.5 blocks per row
      [9, 40, 'fp4', false],
      [6, 128, 'nf4', false], // whole blocks per row
    ] as const) {
      const q = quantize(normal(rows * cols, 8), [rows, cols], { kind, doubleQuant });
      const x = normal(cols, 9);
      const w = dequantize(q);
      const y = matvec4bit(q, x);
      for (let o = 0; o < rows; o++) {
        let want = 0; // float64 dot of the dequantized row
        for (let j = 0; j < cols; j++) want += w[o * cols + j] * x[j];
        expect(Math.abs(y[o] - want), `${kind} [${rows}, ${cols}] row ${o}`).toBeLessThan(1e-5 * (1 + Math.abs(want)));
      }
    }
    expect(() => matvec4bit(quantize(normal(15, 1), [3, 5], { kind: 'nf4' }), normal(5, 2))).toThrow(
      /even in_features/,
    );
  });

  test('a 4096x4096 nf4 weight with double quant packs into at most 0.52 bytes per parameter', () => {
    const n = 4096 * 4096;
    const w = new Float32Array(n);
    const rng = new Rng(4);
    for (let i = 0; i < n; i += 64) w[i] = rng.normal(); // sparse values: fast to fill, same packed size
    const q = quantize(w, [4096, 4096]);
    const perParam = quantizedBytes(q) / n;
    expect(perParam).toBeLessThanOrEqual(0.52);
    expect(perParam * 8).toBeCloseTo(bitsPerWeight('nf4'), 3);
    expect(bitsPerWeight('nf4')).toBeCloseTo(4 + 8 / 64 + 32 / (64 * 256), 12);
  });
});

describe('bad input', () => {
  test('an unknown kind, an unsupported block size, a shape mismatch and non-finite weights are clear errors', () => {
    const w = new Float32Array(8);
    expect(() => quantize(w, [2, 4], { kind: 'nf3' as QuantKind })).toThrow(
      /unknown quantization kind 'nf3': expected one of nf4, fp4, int8/,
    );
    expect(() => quantize(w, [2, 4], { blockSize: 48, name: 'model.layers.0.mlp.up_proj.weight' })).toThrow(
      /model\.layers\.0\.mlp\.up_proj\.weight: block size 48 is not supported/,
    );
    expect(() => quantize(w, [3, 4])).toThrow(/shape \[3,4\] does not match 8 values/);
    w[6] = NaN;
    expect(() => quantize(w, [2, 4], { name: 'q_proj' })).toThrow(/q_proj: non-finite value NaN at \[1, 2\]/);
  });
});

describe('torchSumF32', () => {
  test("adds in torch's CPU order: float32 sums equal torch's bit for bit", () => {
    for (const s of (ref as unknown as { sums: { n: number; seed: number; scale: number; sum: number }[] }).sums) {
      expect(torchSumF32(generate(s.n, s.seed, s.scale))).toBe(s.sum);
    }
  });
});
