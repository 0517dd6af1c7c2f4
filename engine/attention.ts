// Scaled dot-product attention of one (batch row, key/value head) pair as one differentiable op whose backward pass
// recomputes the probabilities (as FlashAttention does) instead of keeping them: tfjs autodiff would otherwise hold
// the [M, S] scores, masked scores and probabilities of every pair and layer until the backward pass
// (measured: 2 GB of wasm heap for the tiny preset at 8 x 512 tokens). All products are plain 2-D matMuls.
import * as tf from '@tensorflow/tfjs';

/**
 * softmax(q kT + mask) v for q [M, d] (already scaled by 1/sqrt(d)), kT [d, S], v [S, d], mask [M, S] additive
 * (0 or a large negative); differentiable in q, kT and v. `mask` is kept for the backward pass.
 */
export function attend(q: tf.Tensor2D, kT: tf.Tensor2D, v: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((qi: tf.Tensor2D, kTi: tf.Tensor2D, vi: tf.Tensor2D, save: tf.GradSaveFunc) => {
    save([qi, kTi, vi, mask]);
    return {
      value: tf.matMul(tf.softmax(tf.add(tf.matMul(qi, kTi), mask)) as tf.Tensor2D, vi),
      // tidy: tfjs runs a custom gradient outside any scope of its own, so its temporaries would live to the end of the backward pass
      gradFunc: (dy: tf.Tensor2D, [sq, skT, sv, smask]: tf.Tensor2D[]) => tf.tidy(() => {
        const probs = tf.softmax(tf.add(tf.matMul(sq, skT), smask)) as tf.Tensor2D; // [M, S], recomputed
        const dv = tf.matMul(tf.transpose(probs), dy); // [S, d]
        const dProbs = tf.matMul(dy, tf.transpose(sv)); // [M, S]
        // softmax backward: dScores = probs * (dProbs - rowsum(dProbs * probs))
        const dScores = tf.mul(probs, tf.sub(dProbs, tf.sum(tf.mul(dProbs, probs), -1, true))) as tf.Tensor2D;
        const dq = tf.matMul(dScores, tf.transpose(skT)); // [M, d]
        const dkT = tf.matMul(tf.transpose(sq), dScores); // [d, S]
        return [dq, dkT, dv];
      }),
    };
  }) as never) as unknown as (q: tf.Tensor2D, kT: tf.Tensor2D, v: tf.Tensor2D) => tf.Tensor2D;
  return f(q, kT, v);
}
