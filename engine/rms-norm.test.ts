// RMSNorm by its formula on a small row, and on wasm (engine/rows-kernel.ts on the pool) against tfjs-backend-cpu's
// autodiff of the tf ops, value and gradient, and on 2 threads to the bits of 1. [130, 517] holds over 2^16 values,
// so on 2 threads it runs on the pool, and 517 leaves a remainder of 4.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { expectWasmMatchesCpu } from '../test/backend-runs.ts';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import { rmsNorm } from './rms-norm.ts';

describe('rmsNorm', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  it('divides by the root mean square plus eps and scales by the weight', () => {
    const y = tf.tidy(() => rmsNorm(tf.tensor2d([[1, 2, 3, 4]]), tf.tensor1d([1, 2, 1, 0.5]), 1e-6).dataSync());
    const r = Math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6);
    [1 / r, 4 / r, 3 / r, 2 / r].forEach((want, i) => {
      expect(Math.abs(y[i] - want)).toBeLessThan(1e-6);
    });
  });

  /** y and dL/dx for L = sum(y * c), from seeded x, weight and c, on the current backend. */
  function valueAndGradient(): Record<string, Float32Array> {
    const [rows, cols] = [130, 517];
    const r = new Rng(9);
    const rand = (n: number, scale: number, shift = 0) =>
      Float32Array.from({ length: n }, () => shift + r.normal() * scale);
    return tf.tidy(() => {
      const x = tf.tensor2d(rand(rows * cols, 2), [rows, cols]);
      const w = tf.tensor1d(rand(cols, 0.3, 1));
      const c = tf.tensor2d(rand(rows * cols, 1), [rows, cols]);
      const { value, grads } = tf.valueAndGrads((xi: tf.Tensor) => tf.sum(tf.mul(rmsNorm(xi, w, 1e-5), c)))([x]);
      const [y, loss, dx] = [rmsNorm(x, w, 1e-5), value, grads[0]].map((t) => t.dataSync() as Float32Array);
      return { y, loss, dx };
    });
  }

  it("equals tfjs-backend-cpu's autodiff of the tf ops, and gives the same bits on 2 threads as on 1", async () => {
    await expectWasmMatchesCpu(valueAndGradient, { y: 2e-5, loss: 1e-2, dx: 2e-5 });
  });
});
