// engine/blas.ts: OpenBLAS's sgemm on a wasm memory against float64 sums, the operand forms it is handed, the kernel
// family picked from CPU flags, and what FT_BLAS says. The products need OpenBLAS (apt-get install
// libopenblas0-pthread) and are skipped without it; the rest runs anywhere.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { Rng } from '../util/rng.ts';
import { blas, cblasOperand, openblasCoretype } from './blas.ts';
import type { GemmProblem } from './gemm.ts';

const [NO_TRANS, TRANS] = [111, 112];

describe('operands as CBLAS takes them', () => {
  it('passes contiguous rows as they are and contiguous columns transposed, leading dimension the other stride', () => {
    expect(cblasOperand({ offset: 0, rowStride: 40, colStride: 1 }, 10, 33)).toEqual({ trans: NO_TRANS, ld: 40 });
    expect(cblasOperand({ offset: 0, rowStride: 1, colStride: 10 }, 10, 33)).toEqual({ trans: TRANS, ld: 10 });
  });

  it('gives a single row a leading dimension of at least its length', () => {
    // B [k = 1, n = 30] read from a transposed [30, 1]: both strides are 1
    expect(cblasOperand({ offset: 0, rowStride: 1, colStride: 1 }, 1, 30)).toEqual({ trans: NO_TRANS, ld: 30 });
  });

  it('refuses an operand whose rows and columns are both strided', () => {
    expect(() => cblasOperand({ offset: 0, rowStride: 2, colStride: 3 }, 4, 4)).toThrow(/neither rows nor columns/);
  });
});

describe('OpenBLAS kernels for this CPU', () => {
  it('picks them from the CPU flags: AVX-512 SkylakeX, AVX2+FMA Haswell, else its own detection', () => {
    const cpuinfo = (flags: string) =>
      `processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: ${flags}\n`;
    expect(openblasCoretype(cpuinfo('fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl'))).toBe('SkylakeX');
    expect(openblasCoretype(cpuinfo('fpu sse2 avx fma avx2'))).toBe('Haswell');
    expect(openblasCoretype(cpuinfo('fpu sse2 ssse3'))).toBeUndefined();
  });
});

/** Whether the optional dependency that loads libraries is installed (npm ci installs it on Linux, macOS, Windows). */
const koffi = (() => {
  try {
    createRequire(import.meta.url)('koffi');
    return true;
  } catch {
    return false;
  }
})();

describe('FT_BLAS', () => {
  it("off keeps products on ft's kernels", () => {
    expect(blas('off')).toBeNull();
  });

  it.skipIf(!koffi)('names the library it cannot load', () => {
    expect(() => blas('/no/such/libblas.so')).toThrow(/^FT_BLAS=\/no\/such\/libblas.so: cannot load it/);
  });

  it.skipIf(!koffi)('refuses a library that is not OpenBLAS', () => {
    expect(() => blas('libm.so.6')).toThrow(/^FT_BLAS=libm.so.6: not OpenBLAS/);
  });
});

const openblas = blas();

describe.skipIf(!openblas)('sgemm on a wasm memory', () => {
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 1024, shared: true });

  /** C [m, n] of A [m, k] B [k, n] in float64 from the heap, through the problem's strides. */
  function reference(heap: Float32Array, g: GemmProblem): Float64Array {
    const c = new Float64Array(g.m * g.n);
    for (let i = 0; i < g.m; i++)
      for (let j = 0; j < g.n; j++) {
        let s = 0;
        for (let p = 0; p < g.k; p++)
          s +=
            heap[g.a.offset + i * g.a.rowStride + p * g.a.colStride] *
            heap[g.b.offset + p * g.b.rowStride + j * g.b.colStride];
        c[i * g.n + j] = s;
      }
    return c;
  }

  /** A problem with A and B random in the heap, each stored row-major or transposed, C `pad` columns wider. */
  function problem(m: number, n: number, k: number, ta: boolean, tb: boolean, pad: number): GemmProblem {
    const heap = new Float32Array(memory.buffer);
    const rng = new Rng(m * 1000 + n + k);
    const a = 64; // a non-zero offset, as a tensor's in the heap
    const b = a + m * k + 3;
    const c = b + k * n + 5;
    for (let i = a; i < c; i++) heap[i] = rng.next() - 0.5;
    heap.fill(Number.NaN, c, c + m * (n + pad)); // beta = 0: C's old values must not be read
    return {
      m,
      n,
      k,
      a: ta ? { offset: a, rowStride: 1, colStride: m } : { offset: a, rowStride: k, colStride: 1 },
      b: tb ? { offset: b, rowStride: 1, colStride: k } : { offset: b, rowStride: n, colStride: 1 },
      c,
      ldc: n + pad,
    };
  }

  const CASES: [number, number, number, boolean, boolean, number][] = [
    [70, 50, 33, false, false, 0],
    [70, 50, 33, true, false, 0],
    [70, 50, 33, false, true, 7],
    [33, 70, 50, true, true, 0],
    [6, 30, 1, false, true, 0], // k = 1 with B transposed: both of B's strides are 1
    [256, 288, 768, false, true, 0], // a stories15M projection's backward shape
  ];

  it.each(CASES)(
    '[%i, %i] x k = %i (A transposed: %s, B transposed: %s, C padded by %i) equals float64 sums',
    (m, n, k, ta, tb, pad) => {
      const g = problem(m, n, k, ta, tb, pad);
      openblas?.sgemm(new Float32Array(memory.buffer), g);
      const heap = new Float32Array(memory.buffer);
      const want = reference(heap, g);
      let worst = 0;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(heap[g.c + i * g.ldc + j] - want[i * n + j]));
      // float32 sums of k products of values under 0.5 in magnitude
      expect(worst).toBeLessThan(1e-6 * k + 1e-6);
      // the padding between C's rows is left as it was
      if (pad > 0) expect(heap[g.c + n]).toBeNaN();
    },
  );

  it("runs the kernel family this machine's flags pick, as OpenBLAS itself reports", () => {
    const coretype = openblasCoretype(readFileSync('/proc/cpuinfo', 'utf8'));
    if (coretype) expect(openblas?.name.toLowerCase()).toContain(` ${coretype.toLowerCase()} `);
  });
});
