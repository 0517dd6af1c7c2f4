// The wasm backend's BatchMatMul (engine/wasm-matmul.ts) against tfjs-backend-cpu's, over transposed, batched and
// broadcast operands, few-row products and one left to XNNPACK; on 2 threads to the bits of 1; and the boxes it
// gives the threads cover C once.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, test } from 'vitest';
import { expectWasmMatchesCpu } from '../test/backend-runs.ts';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import type { GemmProblem } from './gemm.ts';
import { splitProblems } from './wasm-matmul.ts';

type Case = { a: number[]; b: number[]; ta: boolean; tb: boolean };
const CASES: Case[] = [
  { a: [70, 33], b: [33, 50], ta: false, tb: false },
  { a: [33, 70], b: [50, 33], ta: true, tb: true },
  { a: [3, 40, 17], b: [3, 17, 24], ta: false, tb: false }, // batched, as attention's
  { a: [3, 40, 17], b: [3, 24, 17], ta: false, tb: true },
  { a: [2, 3, 17, 40], b: [2, 3, 17, 24], ta: true, tb: false }, // two batch dims
  { a: [4, 12, 9], b: [9, 30], ta: false, tb: false }, // B broadcast over the batch
  { a: [12, 9], b: [4, 30, 9], ta: false, tb: true }, // A broadcast
  // fewer than 6 rows: the few-row kernels, B row-major (n past a multiple of 8) or transposed (k past one of 4)
  { a: [1, 288], b: [288, 100], ta: false, tb: false },
  { a: [2, 5, 16], b: [2, 16, 40], ta: false, tb: false },
  { a: [3, 37], b: [45, 37], ta: false, tb: true },
  { a: [4, 2, 33], b: [4, 19, 33], ta: false, tb: true }, // decoding's attention
  { a: [9, 1], b: [9, 30], ta: true, tb: false }, // transposed A of one row
  { a: [9, 4], b: [9, 30], ta: true, tb: false }, // of 4 rows: left to XNNPACK
  // B of 2^16 values or more: on the pool in bands of C's columns (row-major B: ending on C's cache lines)
  { a: [1, 2048], b: [2048, 1100], ta: false, tb: false },
  { a: [3, 700], b: [1500, 700], ta: false, tb: true },
  { a: [2, 1, 300], b: [2, 300, 250], ta: false, tb: false }, // the second C starts mid-line
  { a: [2, 1, 300], b: [2, 250, 300], ta: false, tb: true },
  // large enough (over 2^22 FLOP) to go to the pool on 2 threads
  { a: [500, 96], b: [96, 200], ta: false, tb: false },
  { a: [3, 64, 256], b: [3, 300, 64], ta: true, tb: true },
];

function products(seed: number): Record<string, Float32Array> {
  const r = new Rng(seed);
  const rand = (shape: number[]) =>
    tf.tensor(
      Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, () => r.next() - 0.5),
      shape,
    );
  return Object.fromEntries(
    CASES.map(({ a, b, ta, tb }) => [
      `[${a}]${ta ? 'T' : ''} x [${b}]${tb ? 'T' : ''}`,
      tf.tidy(() => tf.matMul(rand(a), rand(b), ta, tb).dataSync() as Float32Array),
    ]),
  );
}

describe('BatchMatMul on wasm', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  test("equals tfjs-backend-cpu's within float32 rounding, and gives the same bits on 2 threads as on 1", async () => {
    const names = Object.keys(products(3));
    // float32 sums of k terms in another order than the cpu backend's: the difference grows with k
    const tolerance = CASES.map(({ a, ta }) => 2e-6 * Math.max(1, (ta ? a[a.length - 2] : a[a.length - 1]) / 128));
    await expectWasmMatchesCpu(() => products(3), Object.fromEntries(names.map((n, i) => [n, tolerance[i]])));
  });
});

describe('splitProblems', () => {
  const problem = (m: number, n: number): GemmProblem => ({
    m,
    n,
    k: 4,
    a: { offset: 0, rowStride: 4, colStride: 1 },
    b: { offset: 0, rowStride: n, colStride: 1 },
    c: 0,
    ldc: n,
  });

  test.each([
    [[problem(1024, 288)], 2],
    [[problem(100, 3000)], 3],
    [[problem(7, 9)], 8],
    [Array.from({ length: 5 }, () => problem(40, 40)), 2],
  ] as [GemmProblem[], number][])(
    'covers each C once, in whole tiles, with several boxes for every thread (%#)',
    (ps, threads) => {
      const jobs = splitProblems(ps, threads);
      // at least two boxes per thread (a thread that wakes late leaves some of its share to the others), unless the
      // problems have fewer whole tiles along their longer side
      const bands = ps.length * Math.ceil(Math.max(ps[0].m / 6, ps[0].n / 8));
      expect(jobs.length).toBeGreaterThanOrEqual(Math.min(2 * threads, bands));
      for (const g of ps) {
        const hits = new Uint8Array(g.m * g.n);
        for (const { rows, cols } of jobs.filter((j) => j.g === g)) {
          if (rows[1] < g.m) expect(rows[1] % 6).toBe(0);
          if (cols[1] < g.n) expect(cols[1] % 8).toBe(0);
          for (let i = rows[0]; i < rows[1]; i++) for (let j = cols[0]; j < cols[1]; j++) hits[i * g.n + j]++;
        }
        expect(hits.every((h) => h === 1)).toBe(true);
      }
    },
  );
});
