// engine/custom-grad.ts: under a gradient the op's own gradient is the one used and its temporaries are freed;
// with no gradient being recorded (generation, evaluation) it runs as plain kernels, with the same value and
// nothing left behind. The op's "gradient" is 3·dy on purpose, so the test can tell it from autodiff's 2.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { customGrad } from './custom-grad.ts';

/** y = 2x + 1 through a temporary, with the gradient 3·dy and x saved (as real ops save their inputs). */
const op = customGrad(([x]: [tf.Tensor], save) => {
  save([x]);
  const doubled = tf.mul(x, 2);
  return { value: tf.add(doubled, 1), gradFunc: (dy) => tf.mul(dy, 3) };
});

describe('customGrad', () => {
  const x = () => tf.tensor1d([0.5, -1, 2]);

  it('uses its own gradient, not autodiff of the forward', () => {
    const input = x();
    const g = tf.grad((t: tf.Tensor) => tf.sum(op(t)))(input);
    expect(Array.from(g.dataSync())).toEqual([3, 3, 3]);
    tf.dispose([input, g]);
  });

  it('outside a gradient gives the same value and leaves only its output', () => {
    const input = x();
    const before = tf.memory().numTensors;
    const y = op(input);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(Array.from(y.dataSync())).toEqual([2, -1, 5]);
    tf.dispose([input, y]);
  });

  it('outside a gradient runs without a custom-gradient scope: only the forward kernels', async () => {
    const input = x();
    const profile = await tf.profile(() => op(input));
    expect(profile.kernels.map((k) => k.name)).toEqual(['Multiply', 'Add']);
    input.dispose();
  });
});
