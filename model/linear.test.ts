import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { randn } from '../test/random-llama.ts';
import { Rng } from '../util/rng.ts';
import { DenseLinear } from './linear.ts';

describe('DenseLinear', () => {
  it('computes x W^T + b and dx = dy W as float64 sums do, keeping the weight as stored', () => {
    const rng = new Rng(4);
    // 1 and 3 rows are the few-row products of decoding on wasm, 9 the GEMM
    for (const n of [1, 3, 9]) {
      const [out, inp] = [40, 12];
      const w = randn(rng, out * inp, 0.3);
      const bias = randn(rng, out, 1);
      const xs = randn(rng, n * inp, 1);
      const dys = randn(rng, n * out, 1);
      const layer = new DenseLinear(w, out, inp, bias);
      const [x, dy] = [tf.tensor2d(xs, [n, inp]), tf.tensor2d(dys, [n, out])];
      const { value, grads } = tf.valueAndGrads((xi: tf.Tensor) => layer.apply(xi as tf.Tensor2D))([x], dy);
      const [y, dx] = [value.dataSync(), grads[0].dataSync()];
      for (let i = 0; i < n; i++) {
        for (let o = 0; o < out; o++) {
          let s = bias[o];
          for (let p = 0; p < inp; p++) s += xs[i * inp + p] * w[o * inp + p];
          expect(y[i * out + o]).toBeCloseTo(s, 4);
        }
        for (let p = 0; p < inp; p++) {
          let s = 0;
          for (let o = 0; o < out; o++) s += dys[i * out + o] * w[o * inp + p];
          expect(dx[i * inp + p]).toBeCloseTo(s, 4);
        }
      }
      expect(Array.from(layer.denseWeight())).toEqual(Array.from(w));
      expect(layer.bytes()).toBe(4 * (out * inp + out));
      tf.dispose([x, dy, value, ...grads]);
      layer.dispose();
    }
  });
});
