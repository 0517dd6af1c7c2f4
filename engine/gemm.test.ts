// engine/gemm.ts against float64 products, through every path: transposed operands, tiles cut by C's edges, k beyond
// one block (accumulated tiles), columns beyond one block, B read in place for a single panel of rows, and boxes of C
// computed apart (as threads do) giving the same bits as the whole.
import { describe, expect, test } from 'vitest';
import { Rng } from '../util/rng.ts';
import { GEMM_SCRATCH, type GemmProblem, gemmBlock } from './gemm.ts';
import { gemmKernel, relaxedSimd } from './gemm-kernel.ts';

const memory = new WebAssembly.Memory({ initial: 1024 }); // 64 MiB
const heap = () => new Float32Array(memory.buffer);

/** A, B at the heap's start (as given, transposed or not), then C, then scratch; returns the problem and A, B. */
function setUp(m: number, n: number, k: number, ta: boolean, tb: boolean, seed: number) {
  const r = new Rng(seed);
  const h = heap();
  const a = Float32Array.from({ length: m * k }, () => r.next() - 0.5);
  const b = Float32Array.from({ length: k * n }, () => r.next() - 0.5);
  h.set(a, 0);
  h.set(b, m * k);
  const g: GemmProblem = {
    m,
    n,
    k,
    a: { offset: 0, rowStride: ta ? 1 : k, colStride: ta ? m : 1 },
    b: { offset: m * k, rowStride: tb ? 1 : n, colStride: tb ? k : 1 },
    c: m * k + k * n,
    ldc: n,
  };
  const scratch = g.c + m * n + 3; // not 16-byte aligned: the kernel must not need it
  if (4 * (scratch + GEMM_SCRATCH) > memory.buffer.byteLength) throw new Error('test memory too small');
  h.fill(Number.NaN, g.c, g.c + m * n); // every value of C must be written
  return { g, a, b, scratch };
}

/** Largest |C - A B| over the float32 error bound k * 2^-24 * sum |a||b| (1 or less passes), in float64. */
function worstError({ g, a, b }: ReturnType<typeof setUp>): number {
  const h = heap();
  let worst = 0;
  for (let i = 0; i < g.m; i++)
    for (let j = 0; j < g.n; j++) {
      let exact = 0;
      let size = 0;
      for (let p = 0; p < g.k; p++) {
        const x = a[g.a.rowStride * i + g.a.colStride * p] * b[g.b.rowStride * p + g.b.colStride * j];
        exact += x;
        size += Math.abs(x);
      }
      const err = Math.abs(h[g.c + i * g.ldc + j] - exact) / (g.k * 2 ** -24 * size + 1e-30);
      worst = Math.max(worst, Number.isNaN(err) ? Number.POSITIVE_INFINITY : err);
    }
  return worst;
}

describe('gemmBlock', () => {
  const kernels = { fused: gemmKernel(memory, relaxedSimd()), unfused: gemmKernel(memory, false) };

  test.each([
    [13, 21, 400, false, false], // edges in both directions, k over one block of 384: two of 200
    [13, 21, 400, true, false],
    [13, 21, 400, false, true],
    [13, 21, 400, true, true],
    [12, 2100, 40, false, false], // columns over one block of 2048
    [130, 17, 9, true, true], // rows over one block of 120
    [1, 100, 37, false, false], // one panel of rows: B read in place, its last 4 columns packed
    [5, 64, 600, false, false],
    [6, 16, 8, false, true], // one panel, B transposed: packed
  ])('[%i x %i] x [%i] (A^T %s, B^T %s) is A B within float32 rounding, fused and not', (m, n, k, ta, tb) => {
    for (const kernel of Object.values(kernels)) {
      const p = setUp(m, n, k, ta, tb, m + n + k);
      gemmBlock(heap(), kernel, p.g, p.scratch, [0, m], [0, n]);
      expect(worstError(p)).toBeLessThanOrEqual(1);
    }
  });

  test('boxes of C computed apart give the bits of the whole product', () => {
    const p = setUp(131, 2077, 270, false, true, 7);
    const c = heap().subarray(p.g.c, p.g.c + 131 * 2077);
    gemmBlock(heap(), kernels.fused, p.g, p.scratch, [0, 131], [0, 2077]);
    const whole = Float32Array.from(c);
    c.fill(Number.NaN);
    for (const rows of [
      [0, 61],
      [61, 131],
    ] as [number, number][])
      for (const cols of [
        [0, 1027],
        [1027, 2077],
      ] as [number, number][])
        gemmBlock(heap(), kernels.fused, p.g, p.scratch, rows, cols);
    expect(Buffer.from(c.buffer, c.byteOffset, c.byteLength).equals(Buffer.from(whole.buffer))).toBe(true);
  });
});
