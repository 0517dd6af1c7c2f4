// C = A B on a Float32Array heap, blocked as in GotoBLAS (Goto and van de Geijn, "Anatomy of high-performance matrix
// multiplication", 2008): for each block of NC columns and KC steps of k, B's block is packed into panels of 8 columns;
// for each block of MC rows A's block is packed into panels of 6 rows, and engine/gemm-kernel.ts's tile multiplies one
// A panel (in L2) by one B panel (in L1). Operands are read through strides, so a transposed A or B costs nothing more
// than its packing. The heap is tfjs-backend-wasm's: offsets count float32 values from its start.
import { type GemmKernel, MR, NR } from './gemm-kernel.ts';

const KC = 256; // steps of k per block: a B panel of 256 x 8 values is 8 KiB, in L1
const MC = 120; // rows per A block: 120 x 256 values, 120 KiB, in L2
const NC = 2048; // columns per B block: 2 MiB, in L2/L3

/** Where a matrix's value (i, j) is: heap[offset + i * rowStride + j * colStride]. */
export interface Operand {
  offset: number;
  rowStride: number;
  colStride: number;
}

/** C [m, n] (row-major, rows ldc apart, at heap offset c) = A [m, k] B [k, n]. */
export interface GemmProblem {
  m: number;
  n: number;
  k: number;
  a: Operand;
  b: Operand;
  c: number;
  ldc: number;
}

/** Values of scratch heap one gemmBlock call needs: its packed A and B blocks and one edge tile. */
export const GEMM_SCRATCH = MC * KC + KC * NC + MR * NR;

/** Zeroes `count` values of the heap from `at`, `step` apart: a panel's rows or columns past the matrix's edge. */
function zeroes(heap: Float32Array, at: number, step: number, count: number): void {
  for (let p = 0; p < count; p++) heap[at + p * step] = 0;
}

/** Packs A's rows [i0, i0 + mc), steps [p0, p0 + kc) at `to`: panels of kc x 6 values, rows past the end zero. */
function packA(
  heap: Float32Array,
  kernel: GemmKernel,
  a: Operand,
  i0: number,
  mc: number,
  p0: number,
  kc: number,
  to: number,
) {
  for (let ip = 0; ip < mc; ip += MR) {
    const panel = to + ip * kc;
    for (let r = 0; r < MR; r++) {
      if (ip + r >= mc) zeroes(heap, panel + r, MR, kc);
      else {
        const src = a.offset + (i0 + ip + r) * a.rowStride + p0 * a.colStride;
        kernel.gather(4 * src, 4 * a.colStride, 4 * (panel + r), 4 * MR, kc);
      }
    }
  }
}

/** Packs B's steps [p0, p0 + kc), columns [j0, j0 + nc) at `to`: panels of kc x 8 values, columns past the end zero. */
function packB(
  heap: Float32Array,
  kernel: GemmKernel,
  b: Operand,
  p0: number,
  kc: number,
  j0: number,
  nc: number,
  to: number,
) {
  for (let jp = 0; jp < nc; jp += NR) {
    const panel = to + jp * kc;
    const cols = Math.min(NR, nc - jp);
    const src = b.offset + p0 * b.rowStride + (j0 + jp) * b.colStride;
    if (cols === NR && b.colStride === 1) {
      kernel.copy8(4 * src, 4 * b.rowStride, 4 * panel, kc);
      continue;
    }
    for (let j = 0; j < NR; j++) {
      if (j >= cols) zeroes(heap, panel + j, NR, kc);
      else kernel.gather(4 * (src + j * b.colStride), 4 * b.rowStride, 4 * (panel + j), 4 * NR, kc);
    }
  }
}

/**
 * Computes rows [i0, i1) and columns [j0, j1) of `g`'s C, with `scratch` (GEMM_SCRATCH values of the heap, not
 * overlapping any operand) for its packed blocks. Threads given disjoint boxes of C may run it at once.
 */
export function gemmBlock(
  heap: Float32Array,
  kernel: GemmKernel,
  g: GemmProblem,
  scratch: number,
  [i0, i1]: [number, number],
  [j0, j1]: [number, number],
): void {
  const packedA = scratch;
  const packedB = scratch + MC * KC;
  const edge = packedB + KC * NC; // a 6 x 8 tile for C's tiles that are cut by its edges
  // With one panel of rows, each value of B is used once: B is read in place when its rows are contiguous.
  const inPlaceB = i1 - i0 <= MR && g.b.colStride === 1;
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = Math.min(NC, j1 - jc);
    for (let pc = 0; pc < g.k; pc += KC) {
      const kc = Math.min(KC, g.k - pc);
      const accumulate = pc > 0 ? 1 : 0;
      if (!inPlaceB) packB(heap, kernel, g.b, pc, kc, jc, nc, packedB);
      for (let ic = i0; ic < i1; ic += MC) {
        const mc = Math.min(MC, i1 - ic);
        packA(heap, kernel, g.a, ic, mc, pc, kc, packedA);
        for (let jr = 0; jr < nc; jr += NR) {
          const cols = Math.min(NR, nc - jr);
          const [pb, pbStep] =
            inPlaceB && cols === NR
              ? [4 * (g.b.offset + pc * g.b.rowStride + jc + jr), 4 * g.b.rowStride]
              : [4 * (packedB + jr * kc), 4 * NR];
          if (inPlaceB && cols < NR) packB(heap, kernel, g.b, pc, kc, jc + jr, cols, packedB + jr * kc);
          for (let ir = 0; ir < mc; ir += MR) {
            const pa = 4 * (packedA + ir * kc);
            const rows = Math.min(MR, mc - ir);
            const c = g.c + (ic + ir) * g.ldc + jc + jr;
            if (rows === MR && cols === NR) {
              kernel.tile(pa, pb, pbStep, 4 * c, kc, 4 * g.ldc, accumulate);
              continue;
            }
            for (let r = 0; accumulate && r < rows; r++)
              for (let j = 0; j < cols; j++) heap[edge + r * NR + j] = heap[c + r * g.ldc + j];
            kernel.tile(pa, pb, pbStep, 4 * edge, kc, 4 * NR, accumulate);
            for (let r = 0; r < rows; r++)
              for (let j = 0; j < cols; j++) heap[c + r * g.ldc + j] = heap[edge + r * NR + j];
          }
        }
      }
    }
  }
}
