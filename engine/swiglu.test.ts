// SwiGLU's gating on wasm (engine/rows-kernel.ts on the pool) against tfjs-backend-cpu's autodiff of the tf ops,
// value and both gradients, and on 2 threads to the bits of 1; gates far past exp's range stay finite. [90, 771]
// holds over 2^16 values, so on 2 threads it runs on the pool, and 771 leaves a remainder of 4.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { expectWasmMatchesCpu } from '../test/backend-runs.ts';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import { swiglu } from './swiglu.ts';

describe('swiglu', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  /** y and the gradients of sum(y * c) in gate and up, from seeded inputs, on the current backend. */
  function valueAndGradients(): Record<string, Float32Array> {
    const [rows, cols] = [90, 771];
    const r = new Rng(4);
    const rand = (scale: number) =>
      tf.tensor2d(
        Float32Array.from({ length: rows * cols }, () => r.normal() * scale),
        [rows, cols],
      );
    return tf.tidy(() => {
      const [g, u, c] = [rand(4), rand(1), rand(1)];
      const { grads } = tf.valueAndGrads((gi: tf.Tensor, ui: tf.Tensor) => tf.sum(tf.mul(swiglu(gi, ui), c)))([g, u]);
      const [y, dGate, dUp] = [swiglu(g, u), ...grads].map((t) => t.dataSync() as Float32Array);
      return { y, dGate, dUp };
    });
  }

  it("equals tfjs-backend-cpu's autodiff of the tf ops, and gives the same bits on 2 threads as on 1", async () => {
    await expectWasmMatchesCpu(valueAndGradients, { y: 2e-5, dGate: 2e-5, dUp: 2e-5 });
  });

  it('is finite for gates far outside exp range: silu(-100) is ~0 and silu(100) is 100', () => {
    const g = tf.tensor2d([[-100, -90, 0, 90, 100]]);
    const u = tf.ones([1, 5]);
    const [y, [dg]] = [
      swiglu(g, u).dataSync(),
      tf
        .grads((gi: tf.Tensor) => tf.sum(swiglu(gi, u)))([g])
        .map((t) => t.dataSync()),
    ];
    expect(Array.from(y).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([-0, -0, 0, 90, 100]);
    expect(Array.from(dg).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([-0, -0, 0.5, 1, 1]);
  });
});
