import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { clipGradNorm, globalNorm } from './clip.ts';

describe('clipGradNorm (torch clip_grad_norm_)', () => {
  it('reports the global L2 norm over all gradients', () => {
    const g = { a: tf.tensor1d([3, 0]), b: tf.tensor2d([[0, 4]]) };
    expect(globalNorm(g)).toBeCloseTo(5, 6);
    tf.dispose(Object.values(g));
  });

  it('scales by max_norm / (norm + 1e-6) when above max_norm and returns the pre-clip norm', () => {
    const g = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) };
    const { grads, totalNorm } = clipGradNorm(g, 1);
    expect(totalNorm).toBeCloseTo(5, 6);
    const coef = 1 / (5 + 1e-6);
    expect(Array.from(grads.a.dataSync())).toEqual([expect.closeTo(3 * coef, 6), 0]);
    expect(Array.from(grads.b.dataSync())).toEqual([0, expect.closeTo(4 * coef, 6)]);
    expect(globalNorm(grads)).toBeCloseTo(1, 5);
    tf.dispose([...Object.values(g), ...Object.values(grads)]);
  });

  it('leaves gradients below max_norm unchanged, and max_norm 0 disables clipping', () => {
    const g = { a: tf.tensor1d([0.3, 0.4]) };
    for (const maxNorm of [1, 0]) {
      const { grads, totalNorm } = clipGradNorm(g, maxNorm);
      expect(totalNorm).toBeCloseTo(0.5, 6);
      expect(Array.from(grads.a.dataSync())).toEqual([expect.closeTo(0.3, 7), expect.closeTo(0.4, 7)]);
      grads.a.dispose();
    }
    const big = { a: tf.tensor1d([30, 40]) };
    const unclipped = clipGradNorm(big, 0).grads.a;
    expect(unclipped.dataSync()[1]).toBe(40);
    tf.dispose([big.a, unclipped, g.a]);
  });

  it('leaks no tensors', () => {
    const g = { a: tf.randomNormal([4, 4]), b: tf.randomNormal([3]) };
    const before = tf.memory().numTensors;
    const { grads } = clipGradNorm(g, 0.1);
    tf.dispose(Object.values(grads));
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(g));
  });
});
