// tfjs-backend-wasm's BatchMatMul, computed by engine/gemm.ts instead of XNNPACK for float32 products of at least a
// tile's 6 rows, on the kernel pool's threads when the backend has them. Transposed operands are read through strides,
// so transposeA / transposeB cost nothing extra, where XNNPACK's build runs them 15-25x slower than an explicit
// transpose. Fewer rows (decoding) keep XNNPACK, which streams the weight once: a blocked GEMM packs it first, and
// [1, 288] x [288, 32000] took 15 ms against XNNPACK's 5. Batch shapes other than equal or one-sided (a batch of 1
// against any) keep it too, and so do other dtypes.
import * as tf from '@tensorflow/tfjs';
import { type GemmProblem, gemmBlock } from './gemm.ts';
import { MR, NR } from './gemm-kernel.ts';
import { type HeapBackend, heapCompute, heapMemory } from './heap-compute.ts';
import { type GemmJob, JOBS_PER_THREAD } from './kernel-pool.ts';

type KernelFunc = (args: {
  inputs: Record<string, tf.TensorInfo>;
  attrs: Record<string, unknown>;
  backend: unknown;
}) => tf.TensorInfo | tf.TensorInfo[];

/** Rows from which products run here rather than on XNNPACK (and transpose flags cost nothing). */
export const GEMM_MIN_ROWS = MR;

/** Products below this many FLOP run on the calling thread alone: waking the pool costs more than they take. */
const MIN_POOL_FLOP = 2 ** 22;

/**
 * Boxes of C for `threads` threads: whole problems when there are enough of them, else each cut into as many bands
 * of rows (or of columns, when they are more) as it takes for JOBS_PER_THREAD per thread, whole tiles each. Bands
 * run along the longer side of C, so the operand each band packs anew is the smaller one.
 */
export function splitProblems(problems: GemmProblem[], threads: number): GemmJob[] {
  const parts = Math.ceil((JOBS_PER_THREAD * threads) / problems.length);
  return problems.flatMap((g) => {
    const byRows = g.m >= g.n;
    const [extent, unit] = byRows ? [g.m, MR] : [g.n, NR];
    const band = Math.ceil(extent / parts / unit) * unit;
    const jobs: GemmJob[] = [];
    for (let s = 0; s < extent; s += band) {
      const cut: [number, number] = [s, Math.min(extent, s + band)];
      jobs.push({ g, rows: byRows ? cut : [0, g.m], cols: byRows ? [0, g.n] : cut });
    }
    return jobs;
  });
}

const product = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);

/** A BatchMatMul kernel over engine/gemm.ts that hands what it does not cover to `original`. */
export function gemmBatchMatMul(original: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs;
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as HeapBackend;
    const ra = a.shape.length;
    const rb = b.shape.length;
    const [m, k] = transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    const outerA = a.shape.slice(0, -2);
    const outerB = b.shape.slice(0, -2);
    const [batchA, batchB] = [product(outerA), product(outerB)];
    const batch = Math.max(batchA, batchB);
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
    const covered =
      a.dtype === 'float32' &&
      b.dtype === 'float32' &&
      m >= GEMM_MIN_ROWS &&
      k > 0 &&
      (batchA === batchB || batchA === 1 || batchB === 1) &&
      product(outer) === batch;
    if (!covered) return original(args);

    const compute = heapCompute(backend);
    const out = backend.makeOutput([...outer, m, n], 'float32');
    const [aAt, bAt, cAt] = [a, b, out].map((t) => backend.getMemoryOffset(t.dataId) / 4);
    const problems = Array.from(
      { length: batch },
      (_, i): GemmProblem => ({
        m,
        n,
        k,
        a: {
          offset: aAt + (batchA > 1 ? i * m * k : 0),
          rowStride: transposeA ? 1 : k,
          colStride: transposeA ? m : 1,
        },
        b: {
          offset: bAt + (batchB > 1 ? i * k * n : 0),
          rowStride: transposeB ? 1 : n,
          colStride: transposeB ? k : 1,
        },
        c: cAt + i * m * n,
        ldc: n,
      }),
    );
    const { pool } = compute;
    if (pool && 2 * m * n * k * batch >= MIN_POOL_FLOP) {
      pool.run(splitProblems(problems, pool.threads));
    } else {
      const heap = new Float32Array(heapMemory(backend).buffer); // after the allocation, which may grow it
      for (const g of problems) gemmBlock(heap, compute.kernels.gemm, g, compute.scratch, [0, m], [0, n]);
    }
    return out;
  };
}
