// The threaded wasm build in Node (engine/wasm-threads.ts): products on the GEMM pool equal one thread's, and a
// compute thread (XNNPACK pool or kernel worker) that fails ends the process with one line rather than a hang.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import { blas } from './blas.ts';
import { type HeapBackend, heapCompute, onCallingThread, withoutBlas } from './heap-compute.ts';

const child = (name: string) => fileURLToPath(new URL(`../test/${name}`, import.meta.url));

/** Runs a child that should be ended by the watchdog: its signal and stderr. */
const runChild = (file: string) =>
  new Promise<{ signal: string | null; stderr: string }>((resolve) =>
    execFile(process.execPath, ['--import', 'tsx', child(file)], { timeout: 60_000 }, (err, _out, stderr) =>
      resolve({ signal: (err as { signal?: string } | null)?.signal ?? null, stderr }),
    ),
  );

/** rows x cols values uniform in [-0.5, 0.5) */
const randomMatrix = (r: Rng, rows: number, cols: number): tf.Tensor2D =>
  tf.tensor2d(
    Float32Array.from({ length: rows * cols }, () => r.next() - 0.5),
    [rows, cols],
  );

describe('wasm on a thread pool', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  /** A loss over a product and its gradients, as float32 arrays. */
  const lossAndGrads = () =>
    tf.tidy(() => {
      const r = new Rng(5);
      const [x, w] = [randomMatrix(r, 96, 288), randomMatrix(r, 288, 768)];
      const { value, grads } = tf.valueAndGrads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.logSoftmax(tf.mul(tf.sigmoid(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D)), 3))),
      )([x, w]);
      return [value, ...grads].map((t) => t.dataSync() as Float32Array);
    });

  it('runs products, reductions and gradients on 2 threads to the same bits as on 1', async () => {
    expect((await initBackend('wasm', 1)).threads).toBe(1);
    const one = withoutBlas(lossAndGrads);
    expect((await initBackend('wasm', 2)).threads).toBe(2);
    const two = withoutBlas(lossAndGrads);
    for (let i = 0; i < one.length; i++) expect(Buffer.from(two[i].buffer)).toEqual(Buffer.from(one[i].buffer));
  });

  it.skipIf(!blas())("on OpenBLAS, runs them on 2 threads to 1 thread's values within float32 rounding", async () => {
    await initBackend('wasm', 1);
    const one = lossAndGrads();
    await initBackend('wasm', 2);
    const two = lossAndGrads();
    for (let i = 0; i < one.length; i++) {
      const scale = one[i].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const worst = one[i].reduce((m, v, j) => Math.max(m, Math.abs(v - two[i][j])), 0);
      expect(worst).toBeLessThanOrEqual(1e-5 * scale);
    }
  });

  it('onCallingThread computes the same bits with the pool set aside, and restores it after a throw', async () => {
    await initBackend('wasm', 2);
    const backend = tf.backend() as unknown as HeapBackend;
    const compute = heapCompute(backend);
    const pool = compute.pool;
    expect(pool?.threads).toBe(2);
    const product = () =>
      tf.tidy(() => {
        const r = new Rng(9);
        return tf.matMul(randomMatrix(r, 64, 512), randomMatrix(r, 512, 512)).dataSync() as Float32Array;
      });
    const pooled = withoutBlas(product);
    const alone = await onCallingThread(backend, async () => {
      expect(compute.pool).toBeUndefined();
      return withoutBlas(product);
    });
    expect(Buffer.from(alone.buffer)).toEqual(Buffer.from(pooled.buffer));
    await expect(
      onCallingThread(backend, async () => {
        throw new Error('inside');
      }),
    ).rejects.toThrow('inside');
    expect(compute.pool).toBe(pool);
  });

  it('a pool thread that throws while the main thread waits ends the process with one line', async () => {
    const r = await runChild('pool-failure-child.ts');
    expect(r.signal).toBe('SIGKILL'); // not the timeout's SIGTERM: the watchdog ended it
    expect(r.stderr).toMatch(
      /^ft: wasm pool thread \d+ failed: ENOENT: no such file or directory, open '\/nonexistent\/tfjs-backend-wasm-threaded-simd\.js'; the run is stopped \(the last checkpoint is kept\)\n$/,
    );
  });

  it('a kernel worker thread that throws while the main thread waits ends the process with one line', async () => {
    const r = await runChild('kernel-worker-failure-child.ts');
    expect(r.signal).toBe('SIGKILL');
    expect(r.stderr).toMatch(
      /^ft: kernel worker thread \d+ failed: Cannot read properties of undefined \(reading 'buffer'\); the run is stopped \(the last checkpoint is kept\)\n$/,
    );
  });
});
