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
});
