// Scaled dot-product attention of one (batch row, key/value head) pair as one differentiable op whose backward pass
// recomputes the probabilities (as FlashAttention does) instead of keeping them: tfjs autodiff would otherwise hold
// the [M, S] scores, masked scores and probabilities of every pair and layer until the backward pass
// (measured: 2 GB of wasm heap for the tiny preset at 8 x 512 tokens). All products are plain 2-D matMuls.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';

/**
 * softmax(q kT + mask) v for q [M, d] (already scaled by 1/sqrt(d)), kT [d, S], v [S, d], mask [M, S] additive
 * (0 or a large negative); differentiable in q, kT and v. `mask` is kept for the backward pass.
 */
export function attend(q: tf.Tensor2D, kT: tf.Tensor2D, v: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor2D {
  const f = customGrad<[tf.Tensor2D, tf.Tensor2D, tf.Tensor2D], tf.Tensor2D>(([qi, kTi, vi], save) => {
    save([qi, kTi, vi, mask]);
    return {
      value: tf.matMul(tf.softmax(tf.add(tf.matMul(qi, kTi), mask)) as tf.Tensor2D, vi),
      gradFunc: (dy, saved) => {
        const [sq, skT, sv, smask] = saved as tf.Tensor2D[];
        const probs = tf.softmax(tf.add(tf.matMul(sq, skT), smask)) as tf.Tensor2D; // [M, S], recomputed
        const dv = tf.matMul(tf.transpose(probs), dy); // [S, d]
        const dProbs = tf.matMul(dy, tf.transpose(sv)); // [M, S]
        // softmax backward: dScores = probs * (dProbs - rowsum(dProbs * probs))
        const dScores = tf.mul(probs, tf.sub(dProbs, tf.sum(tf.mul(dProbs, probs), -1, true))) as tf.Tensor2D;
        const dq = tf.matMul(dScores, tf.transpose(skT)); // [M, d]
        const dkT = tf.matMul(tf.transpose(sq), dScores); // [d, S]
        return [dq, dkT, dv];
      },
    };
  });
  return f(q, kT, v);
}

/** Below this many score-products (G*T * S * d) one batched product beats many small 2-D ones on wasm. */
export const BATCHED_ATTENTION_BELOW = 1 << 16;

/**
 * Masked attention of every (batch row, key/value head) pair: q [B*KV, M, d] (scaled), k and v [B*KV, S, d], one
 * additive mask [M, S] per batch row (pair n uses masks[floor(n / KV)]); returns [B*KV, M, d].
 * On wasm, batched (rank 3) matMul runs a slow generic loop (~1 GFLOP/s against ~15 for 2-D through XNNPACK), so
 * each pair is its own 2-D `attend` (which also recomputes probabilities in backward), except for short rows and
 * decoding, where one batched product costs less than many small ones and their per-op overhead (measured on the
 * tiny preset: batched wins below T ~ 48 rows). Other backends take the batched form.
 */
export function maskedAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  masks: tf.Tensor2D[],
  KV: number,
): tf.Tensor3D {
  const [pairs, M, d] = q.shape;
  const S = k.shape[1];
  if (tf.getBackend() !== 'wasm' || M * S * d < BATCHED_ATTENTION_BELOW) {
    const B = pairs / KV;
    const scores = tf.reshape(tf.matMul(q, k, false, true), [B, KV, M, S]);
    const probs = tf.softmax(tf.add(scores, tf.expandDims(tf.stack(masks), 1)));
    return tf.matMul(tf.reshape(probs, [pairs, M, S]), v);
  }
  const kTs = tf.unstack(tf.transpose(k, [0, 2, 1])) as tf.Tensor2D[]; // [d, S] each
  const vs = tf.unstack(v) as tf.Tensor2D[];
  const outs = (tf.unstack(q) as tf.Tensor2D[]).map((qn, n) => attend(qn, kTs[n], vs[n], masks[Math.floor(n / KV)])); // [M, d] each
  return tf.stack(outs) as tf.Tensor3D;
}
