import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { randn } from '../test/random-llama.ts';
import { Rng } from '../util/rng.ts';
import { DenseLinear, HeadLinear } from './linear.ts';

describe('HeadLinear', () => {
  it("gives DenseLinear's output and input gradient, keeping the weight as stored", () => {
    const rng = new Rng(4);
    const [out, inp, n] = [40, 12, 5];
    const w = randn(rng, out * inp, 0.3);
    const x = tf.tensor2d(randn(rng, n * inp, 1), [n, inp]);
    const dy = tf.tensor2d(randn(rng, n * out, 1), [n, out]);
    const [dense, head] = [new DenseLinear(w, out, inp), new HeadLinear(w, out, inp)];
    const run = (l: DenseLinear | HeadLinear) => {
      const { value, grads } = tf.valueAndGrads((xi: tf.Tensor) => l.apply(xi as tf.Tensor2D))([x], dy);
      return [Array.from(value.dataSync()), Array.from(grads[0].dataSync())];
    };
    const [[yd, gd], [yh, gh]] = [run(dense), run(head)];
    yh.forEach((v, i) => expect(v).toBeCloseTo(yd[i], 5));
    gh.forEach((v, i) => expect(v).toBeCloseTo(gd[i], 5));
    expect(Array.from(head.denseWeight())).toEqual(Array.from(w));
    expect(head.bytes()).toBe(4 * out * inp);
    tf.dispose([x, dy]);
    dense.dispose();
    head.dispose();
  });
});
