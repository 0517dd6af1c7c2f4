// C = A B on a Float32Array heap, blocked as in GotoBLAS (Goto and van de Geijn, "Anatomy of high-performance matrix
// multiplication", 2008): for each block of NC columns and KC steps of k, B's block is packed into panels of 8 columns;
// for each block of MC rows A's block is packed into panels of 6 rows, and engine/gemm-kernel.ts's tile multiplies one
// A panel (in L2) by one B panel (in L1). Operands are read through strides, so a transposed A or B costs nothing more
// than its packing. The heap is tfjs-backend-wasm's: offsets count float32 values from its start.
import { type GemmKernel, MR, NR } from './gemm-kernel.ts';

const KC = 384; // most steps of k per block (k is cut into equal blocks): a B panel of 384 x 8 values is 12 KiB, in L1
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

/** The part of `g` that computes C's rows [i0, i1) and columns [j0, j1), as a problem of its own. */
export function boxProblem(g: GemmProblem, [i0, i1]: [number, number], [j0, j1]: [number, number]): GemmProblem {
  return {
    m: i1 - i0,
    n: j1 - j0,
    k: g.k,
    a: { ...g.a, offset: g.a.offset + i0 * g.a.rowStride },
    b: { ...g.b, offset: g.b.offset + j0 * g.b.colStride },
    c: g.c + i0 * g.ldc + j0,
    ldc: g.ldc,
  };
}

/** Values of scratch heap one gemmBlock call needs: its packed A and B blocks and one edge tile. */
export const GEMM_SCRATCH = MC * KC + KC * NC + MR * NR;

/**
 * A panel cut by the matrix's edge, in JS: `lines` of the panel's `width` from src (lineStride apart), k steps
 * (stepStride apart), the rest of each step zero. Offsets and strides in values.
 */
function packEdge(
  heap: Float32Array,
  src: number,
  lineStride: number,
  stepStride: number,
  lines: number,
  width: number,
  to: number,
  k: number,
) {
  for (let p = 0; p < k; p++) {
    const at = to + p * width;
    let r = 0;
    for (; r < lines; r++) heap[at + r] = heap[src + r * lineStride + p * stepStride];
    for (; r < width; r++) heap[at + r] = 0;
  }
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
    const src = a.offset + (i0 + ip) * a.rowStride + p0 * a.colStride;
    const panel = to + ip * kc;
    if (mc - ip >= MR) kernel.pack6(4 * src, 4 * a.rowStride, 4 * a.colStride, 4 * panel, kc);
    else packEdge(heap, src, a.rowStride, a.colStride, mc - ip, MR, panel, kc);
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
    const src = b.offset + p0 * b.rowStride + (j0 + jp) * b.colStride;
    const panel = to + jp * kc;
    if (nc - jp < NR) packEdge(heap, src, b.colStride, b.rowStride, nc - jp, NR, panel, kc);
    else if (b.colStride === 1) kernel.copy8(4 * src, 4 * b.rowStride, 4 * panel, kc);
    else kernel.pack8(4 * src, 4 * b.colStride, 4 * b.rowStride, 4 * panel, kc);
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
    const kBlock = Math.ceil(g.k / Math.ceil(g.k / KC)); // 288 is one block, not 256 + 32
    for (let pc = 0; pc < g.k; pc += kBlock) {
      const kc = Math.min(kBlock, g.k - pc);
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
          // whole tiles in one call, then the tiles cut by C's edges through the edge tile
          const whole = cols === NR ? Math.floor(mc / MR) : 0;
          const c0 = g.c + ic * g.ldc + jc + jr;
          if (whole > 0) kernel.tiles(4 * packedA, pb, pbStep, 4 * c0, kc, 4 * g.ldc, accumulate, whole);
          for (let ir = whole * MR; ir < mc; ir += MR) {
            const pa = 4 * (packedA + ir * kc);
            const rows = Math.min(MR, mc - ir);
            const c = c0 + ir * g.ldc;
            for (let r = 0; accumulate && r < rows; r++)
              for (let j = 0; j < cols; j++) heap[edge + r * NR + j] = heap[c + r * g.ldc + j];
            kernel.tiles(pa, pb, pbStep, 4 * edge, kc, 4 * NR, accumulate, 1);
            for (let r = 0; r < rows; r++)
              for (let j = 0; j < cols; j++) heap[c + r * g.ldc + j] = heap[edge + r * NR + j];
          }
        }
      }
    }
  }
}
