// Scaled dot-product attention as one differentiable op whose backward pass recomputes the probabilities (as
// FlashAttention does) instead of keeping them: tfjs autodiff would otherwise hold the scores, masked scores and
// probabilities of every layer until the backward pass (measured: 2 GB of wasm heap for the tiny preset at 8 x 512
// tokens). Pairs of (batch row, key/value head) go through batched products, a group of them at a time so that the
// score-sized temporaries stay bounded.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { maskedSoftmax, softmaxBackward } from './softmax.ts';

/**
 * softmax(q k^T + mask) v over pairs: q [P, M, d] (already scaled by 1/sqrt(d)), k and v [P, S, d], mask [R, M, S]
 * additive (0 or a large negative), pair n taking mask floor(n / (P / R)); differentiable in q, k and v. `mask` is
 * kept for the backward pass.
 */
function attend(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, mask: tf.Tensor3D): tf.Tensor3D {
  const [P, M] = q.shape;
  const [R, , S] = mask.shape;
  const probsOf = (qi: tf.Tensor3D, ki: tf.Tensor3D, m: tf.Tensor3D): tf.Tensor3D => {
    const scores = tf.reshape<tf.Rank.R4>(tf.matMul(qi, ki, false, true), [R, P / R, M, S]);
    return tf.reshape(maskedSoftmax(scores, m), [P, M, S]);
  };
  const f = customGrad<[tf.Tensor3D, tf.Tensor3D, tf.Tensor3D], tf.Tensor3D>(([qi, ki, vi], save) => {
    save([qi, ki, vi, mask]);
    return {
      value: tf.matMul(probsOf(qi, ki, mask), vi),
      gradFunc: (dy, saved) => {
        const [sq, sk, sv, smask] = saved as tf.Tensor3D[];
        const probs = probsOf(sq, sk, smask); // [P, M, S], recomputed
        const dv = tf.matMul(probs, dy, true, false); // [P, S, d]
        const dProbs = tf.matMul(dy, sv, false, true); // [P, M, S]
        const dScores = softmaxBackward(probs, dProbs);
        const dq = tf.matMul(dScores, sk); // [P, M, d]
        const dk = tf.matMul(dScores, sq, true, false); // [P, S, d]
        return [dq, dk, dv];
      },
    };
  });
  return f(q, k, v);
}

/** Score values ([pairs, M, S]) per group of pairs: 16 MiB per score-sized temporary. */
const SCORES_PER_GROUP = 1 << 22;

/**
 * Masked attention of every (batch row, key/value head) pair: q [B*KV, M, d] (scaled), k and v [B*KV, S, d], one
 * additive mask [M, S] per batch row (pair n uses masks[floor(n / KV)]); returns [B*KV, M, d]. The pairs go in
 * groups of whole batch rows, or of some of one row's heads, of at most SCORES_PER_GROUP scores (at least one pair).
 */
export function maskedAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  masks: tf.Tensor2D[],
  KV: number,
): tf.Tensor3D {
  const [pairs, M] = q.shape;
  const S = k.shape[1];
  const pairsPerGroup = groupPairs(M * S, KV);
  const outs: tf.Tensor3D[] = [];
  for (let p0 = 0; p0 < pairs; p0 += pairsPerGroup) {
    const n = Math.min(pairsPerGroup, pairs - p0);
    const row0 = Math.floor(p0 / KV);
    const mask = tf.stack(masks.slice(row0, row0 + Math.max(1, n / KV))) as tf.Tensor3D; // [rows, M, S]
    const piece = (t: tf.Tensor3D) => (n === pairs ? t : tf.slice(t, [p0, 0, 0], [n, -1, -1]));
    outs.push(attend(piece(q), piece(k), piece(v), mask));
  }
  return outs.length === 1 ? outs[0] : (tf.concat(outs) as tf.Tensor3D);
}

/**
 * Pairs per group for pairs of `pairScores` scores each ([M, S]) and KV pairs per batch row: whole rows while at
 * least one fits in SCORES_PER_GROUP, else the most of one row's heads that divide KV and fit (at least one).
 */
export function groupPairs(pairScores: number, KV: number): number {
  const fits = Math.max(1, Math.floor(SCORES_PER_GROUP / pairScores));
  const rows = Math.floor(fits / KV);
  return rows > 0 ? rows * KV : largestDivisorUpTo(KV, fits);
}

/** The largest divisor of n that is at most limit (at least 1). */
function largestDivisorUpTo(n: number, limit: number): number {
  for (let d = Math.min(n, limit); d > 1; d--) if (n % d === 0) return d;
  return 1;
}
