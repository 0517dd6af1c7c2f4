// tfjs-backend-wasm's BatchMatMul, computed by ft's kernels instead of XNNPACK for float32 products, on the kernel
// pool's threads when the backend has them: engine/gemm.ts for 6 rows and more, engine/rows-kernel.ts's few-row
// functions below. Transposed operands are read through strides, so transposeA / transposeB cost nothing extra, where
// XNNPACK's build runs them 15-25x slower than an explicit transpose. Left to XNNPACK: transposed A of 2-5 rows, batch
// shapes other than equal or one-sided (a batch of 1 against any), and other dtypes.
// Few rows (decoding) stream B once rather than packing it: [1, 288] x [32000, 288]^T takes 5-6 ms on one thread,
// as XNNPACK against a transposed copy of the weight (4-5 ms) and against 12-20 ms for XNNPACK's (w x^T)^T.
import * as tf from '@tensorflow/tfjs';
import type { GemmProblem } from './gemm.ts';
import { MR, NR } from './gemm-kernel.ts';
import { type HeapBackend, type HeapCompute, heapCompute, heapMemory } from './heap-compute.ts';
import { callRows, computeBox, type GemmBox, JOBS_PER_THREAD, type RowsJob } from './kernel-pool.ts';
import type { RowsFunctionName } from './rows-kernel.ts';

type KernelFunc = (args: {
  inputs: Record<string, tf.TensorInfo>;
  attrs: Record<string, unknown>;
  backend: unknown;
}) => tf.TensorInfo | tf.TensorInfo[];

/** Rows from which products run here rather than on XNNPACK (and transpose flags cost nothing). */
export const GEMM_MIN_ROWS = MR;

/**
 * Boxes per thread for OpenBLAS. Each box packs its operands anew, and OpenBLAS runs a larger box faster, so one per
 * thread: a stories15M step on 2 threads took 515-520 ms with 1, 533-549 with 2, 567-574 with JOBS_PER_THREAD's 4
 * (`.prof/stepprof.ts`).
 */
const BLAS_JOBS_PER_THREAD = 1;

/** Products below this many FLOP run on the calling thread alone: waking the pool costs more than they take. */
const MIN_POOL_FLOP = 2 ** 22;

/**
 * Boxes of C for `threads` threads: whole problems when there are enough of them, else each cut into as many bands
 * of rows (or of columns, when they are more) as it takes for `jobsPerThread` per thread, whole tiles each. Bands
 * run along the longer side of C, so the operand each band packs anew is the smaller one.
 */
export function splitProblems(problems: GemmProblem[], threads: number, jobsPerThread = JOBS_PER_THREAD): GemmBox[] {
  const parts = Math.ceil((jobsPerThread * threads) / problems.length);
  return problems.flatMap((g) => {
    const byRows = g.m >= g.n;
    const [extent, unit] = byRows ? [g.m, MR] : [g.n, NR];
    const band = Math.ceil(extent / parts / unit) * unit;
    const jobs: GemmBox[] = [];
    for (let s = 0; s < extent; s += band) {
      const cut: [number, number] = [s, Math.min(extent, s + band)];
      jobs.push({ g, rows: byRows ? cut : [0, g.m], cols: byRows ? [0, g.n] : cut });
    }
    return jobs;
  });
}

const product = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);

/**
 * Few-row products whose B holds fewer values than this run on the calling thread alone. They stream B once, so they
 * take about as long as reading it (~25 us for 2^16 values, 256 KiB, from cache), against a pool round trip of
 * 5-10 us. stories15M decoding on 2 threads, one process taking turns (medians of 9): 21.3 ms/token with none on the
 * pool, 19.1 with those of 2^22 FLOP (lm_head alone), 17.4 from 2^16 values of B.
 */
const MIN_POOL_B_VALUES = 2 ** 16;

/** Values in a 64-byte cache line. */
const LINE_VALUES = 16;

/**
 * Products of fewer than 6 rows (A row-major) as engine/rows-kernel.ts's few-row functions: against B row-major, or
 * against B transposed as dot products of W's contiguous rows. On the pool, C's columns go in bands. The row-major
 * form adds into C once per row of B, so its bands end on cache lines of C: with two threads adding into shared lines,
 * each thread's half of [1, 288] x [288, 768] took 1.7x as long.
 */
function runFewRows(compute: HeapCompute, problems: GemmProblem[], transposed: boolean, pooled: boolean): void {
  const { m, n, k } = problems[0];
  const fn = `fewRows${transposed ? 'T' : ''}${m}` as RowsFunctionName;
  const parts = pooled && compute.pool ? Math.ceil((JOBS_PER_THREAD * compute.pool.threads) / problems.length) : 1;
  const band = Math.ceil(n / parts);
  const jobs: RowsJob[] = problems.flatMap((g) => {
    const bStep = transposed ? g.b.colStride : 1; // values from one column of B (or row of W) to the next
    const ldb = transposed ? g.b.colStride : g.b.rowStride;
    const bandEnd = (j: number): number =>
      transposed ? j + band : Math.ceil((g.c + j + band) / LINE_VALUES) * LINE_VALUES - g.c;
    const cuts: RowsJob[] = [];
    for (let j = 0, end = 0; j < n; j = end) {
      end = Math.min(n, bandEnd(j));
      cuts.push({
        fn,
        args: [
          4 * g.a.offset,
          4 * g.a.rowStride,
          4 * (g.b.offset + j * bStep),
          4 * ldb,
          4 * (g.c + j),
          4 * g.ldc,
          k,
          end - j,
        ],
      });
    }
    return cuts;
  });
  if (pooled && compute.pool) compute.pool.run(jobs);
  else for (const job of jobs) callRows(compute.kernels.rows, job);
}

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
      (m >= GEMM_MIN_ROWS || !transposeA || m === 1) &&
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
    if (m < GEMM_MIN_ROWS) {
      runFewRows(compute, problems, transposeB, pool !== undefined && k * n * batch >= MIN_POOL_B_VALUES);
      return out;
    }
    const blas = compute.kernels.blas !== null;
    if (pool && 2 * m * n * k * batch >= MIN_POOL_FLOP) {
      const boxes = splitProblems(problems, pool.threads, blas ? BLAS_JOBS_PER_THREAD : JOBS_PER_THREAD);
      pool.run(boxes.map((box) => ({ ...box, blas })));
    } else {
      const heap = new Float32Array(heapMemory(backend).buffer); // after the allocation, which may grow it
      for (const g of problems)
        computeBox(heap, compute.kernels, compute.scratch, { g, rows: [0, m], cols: [0, n], blas });
    }
    return out;
  };
}
