import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { filledTensor2d } from './filled.ts';

describe('filledTensor2d', () => {
  it('makes a tensor of the values written in place, tracked and freed like any other', () => {
    const before = tf.memory().numTensors;
    const t = tf.tidy(() => {
      const inner = filledTensor2d([2, 3], (v) => v.forEach((_, i) => (v[i] = i * 0.5)));
      filledTensor2d([4, 4], (v) => v.fill(1)); // disposed by the tidy
      return tf.add(inner, 1);
    });
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.dataSync())).toEqual([1, 1.5, 2, 2.5, 3, 3.5]);
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('hands fill the values of its input tensors, in order', () => {
    const [a, b] = [tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor1d([10, 20, 30, 40])];
    const sum = filledTensor2d(
      [2, 2],
      (out, x, y) => {
        for (let i = 0; i < out.length; i++) out[i] = x[i] + y[i];
      },
      [a, b],
    );
    expect(Array.from(sum.dataSync())).toEqual([11, 22, 33, 44]);
    tf.dispose([a, b, sum]);
  });
});
