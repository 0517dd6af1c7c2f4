// The wasm rows-kernel paths of attention's softmax, its backward pass and cross-entropy (engine/softmax.ts,
// engine/cross-entropy.ts) against tfjs-backend-cpu's ops, and on 2 threads to the bits of 1. The shapes hold
// over 2^16 values, so on 2 threads they run on the kernel pool, in bands.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, test } from 'vitest';
import { expectWasmMatchesCpu } from '../test/backend-runs.ts';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import { crossEntropy } from './cross-entropy.ts';
import { maskedSoftmax, softmaxBackward } from './softmax.ts';

const [R, G, M, S] = [2, 3, 40, 301];
const [N, V] = [70, 1003];

/** Every output of the three on the current backend, from seeded inputs. */
function outputs(): Record<string, Float32Array> {
  const r = new Rng(5);
  const rand = (shape: number[], scale: number) =>
    tf.tensor(
      Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, () => r.normal() * scale),
      shape,
    );
  return tf.tidy(() => {
    const scores = rand([R, G, M, S], 4) as tf.Tensor4D;
    const mask = tf.tensor3d(
      Float32Array.from({ length: R * M * S }, (_, i) => (i % S <= (Math.floor(i / S) % M) * 7 ? 0 : -1e9)),
      [R, M, S],
    );
    const probs = maskedSoftmax(scores, mask);
    const dScores = softmaxBackward(probs, rand([R, G, M, S], 1));
    const logits = rand([N, V], 6) as tf.Tensor2D;
    const targets = Int32Array.from({ length: N }, (_, n) => (n % 9 === 4 ? -1 : (n * 37) % V));
    const count = targets.filter((y) => y >= 0).length;
    const { value, grads } = tf.valueAndGrads((z: tf.Tensor) => crossEntropy(z as tf.Tensor2D, { targets, count }))([
      logits,
    ]);
    // dy other than 1, as the chunked loss gives each chunk
    const scaled = tf.grad((z: tf.Tensor) => tf.mul(crossEntropy(z as tf.Tensor2D, { targets, count }), 0.375))(logits);
    const [p, dS, loss, dLogits, dScaled] = [probs, dScores, value, grads[0], scaled].map(
      (t) => t.dataSync() as Float32Array,
    );
    return { probs: p, dScores: dS, loss, dLogits, 'dLogits x 0.375': dScaled };
  });
}

describe('softmaxes and cross-entropy on wasm', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  test("equal tfjs-backend-cpu's within float32 rounding, and give the same bits on 2 threads as on 1", async () => {
    await expectWasmMatchesCpu(outputs, {
      probs: 2e-6,
      dScores: 2e-6,
      loss: 2e-5,
      dLogits: 2e-6,
      'dLogits x 0.375': 2e-6,
    });
  });

  test('masked entries are exactly 0', () => {
    const probs = outputs().probs;
    expect(probs.filter((p, j) => p !== 0 && j % S > (Math.floor(j / S) % M) * 7).length).toBe(0);
  });
});
