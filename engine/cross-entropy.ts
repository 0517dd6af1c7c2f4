// Token cross-entropy, the largest tensors of a training step ([tokens, vocab] logits, probabilities and their
// gradient), computed the way each backend handles best; and the chunked form that never holds all of them at once.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { filledTensor2d } from './filled.ts';
import { recompute } from './recompute.ts';

/** What causalLmLoss scores: targets per row of logits, -1 where the row is not scored. */
export interface ScoredTargets {
  /** [N] target id per row, -1 = not scored */
  targets: Int32Array;
  /** rows scored */
  count: number;
}

/**
 * Mean cross-entropy over the scored rows of `logits` [N, V]; 0 when none is scored (still differentiable).
 * On wasm the [N, V] tensors are walked twice instead of the ~15 times of tf.logSoftmax's chain and its autodiff:
 * once by tf.softmax (one vectorized wasm kernel; tf.exp runs ~3x slower per element there), whose target entries give
 * the loss, and once by the gradient, (softmax - onehot) / count on scored rows, written in one JS pass over the heap.
 * Other backends differentiate logSoftmax.
 */
export function crossEntropy(logits: tf.Tensor2D, { targets, count }: ScoredTargets): tf.Scalar {
  if (count === 0) return tf.tidy(() => tf.mul(tf.sum(logits), 0)) as tf.Scalar;
  return tf.tidy(() =>
    tf.getBackend() === 'wasm' ? fusedCrossEntropy(targets, count)(logits) : plainCrossEntropy(logits, targets, count),
  );
}

/** Scored rows' flat indices n*V + target and a 0/1 row weight. */
function picks(targets: Int32Array, V: number): { flatIndex: Int32Array; scored: Float32Array } {
  const flat: number[] = [];
  const scored = new Float32Array(targets.length);
  targets.forEach((y, n) => {
    if (y < 0) return;
    flat.push(n * V + y);
    scored[n] = 1;
  });
  return { flatIndex: Int32Array.from(flat), scored };
}

function plainCrossEntropy(z: tf.Tensor2D, targets: Int32Array, count: number): tf.Scalar {
  const { flatIndex } = picks(targets, z.shape[1]);
  const logProbs = tf.reshape(tf.logSoftmax(z), [-1]);
  return tf.div(tf.neg(tf.sum(tf.gather(logProbs, tf.tensor1d(flatIndex, 'int32')))), count) as tf.Scalar;
}

/** The smallest normal float32: a target probability below it has lost precision (or is 0), so its -log is not used. */
const FLOAT32_MIN_NORMAL = 2 ** -126;

function fusedCrossEntropy(targets: Int32Array, count: number): (z: tf.Tensor2D) => tf.Scalar {
  const op = customGrad<[tf.Tensor2D], tf.Scalar>(([z], save) => {
    const [N, V] = z.shape;
    const { flatIndex, scored } = picks(targets, V);
    const probs = tf.softmax(z) as tf.Tensor2D; // [N, V]
    const index = tf.tensor1d(flatIndex, 'int32');
    const picked = tf.gather(tf.reshape(probs, [-1]), index); // [count] target probabilities
    // -log p(target) needs no pass over [N, V] beyond the softmax; a target probability that underflowed is rare
    // (its logit ~87 below the row's largest) and then the batch goes the stable way: lse = max(z) - log(max(probs))
    const underflow = (picked.dataSync() as Float32Array).some((p) => !(p >= FLOAT32_MIN_NORMAL));
    const value = underflow
      ? tf.div<tf.Scalar>(
          tf.sub(
            tf.sum(tf.mul(tf.sub(tf.max(z, -1), tf.log(tf.max(probs, -1))), scored)),
            tf.sum(tf.gather(tf.reshape(z, [-1]), index)),
          ),
          count,
        )
      : tf.div<tf.Scalar>(tf.neg(tf.sum(tf.log(picked))), count);
    save([probs]);
    return {
      value,
      gradFunc: (dy, [p]) => {
        // as float32 tensor ops would round it: dy / count, then (p - onehot) * that on scored rows, 0 elsewhere
        const scale = Math.fround((dy.dataSync() as Float32Array)[0] / count);
        return filledTensor2d([N, V], (g, pv) => writeGradient(g, pv, targets, V, scale), [p]);
      },
    };
  });
  return op;
}

/** g = (p - onehot(target)) * scale on the rows with a target, 0 on the rest; one pass over [N, V] (N = targets). */
function writeGradient(g: Float32Array, p: Float32Array, targets: Int32Array, V: number, scale: number): void {
  for (let n = 0, row = 0; n < targets.length; n++, row += V) {
    const y = targets[n];
    if (y < 0) {
      g.fill(0, row, row + V);
      continue;
    }
    for (let v = row, end = row + V; v < end; v++) g[v] = p[v] * scale;
    g[row + y] = Math.fround(p[row + y] - 1) * scale;
  }
}

/**
 * crossEntropy(head(h), targets) with the head and the loss `chunkRows` rows of h [N, hidden] at a time, each chunk
 * made again in the backward pass: a step holds one chunk's [rows, vocab] logits, probabilities and gradient instead
 * of all of them. Same value and gradients as the whole form.
 */
export function chunkedCrossEntropy(
  h: tf.Tensor2D,
  head: (x: tf.Tensor2D) => tf.Tensor2D,
  { targets, count }: ScoredTargets,
  chunkRows: number,
): tf.Scalar {
  return tf.tidy(() => {
    if (count === 0) return tf.mul(tf.sum(h), 0) as tf.Scalar;
    const N = h.shape[0];
    const parts: tf.Tensor2D[] = [];
    for (let start = 0; start < N; start += chunkRows) {
      const rows = Math.min(chunkRows, N - start);
      const part = targets.subarray(start, start + rows);
      const scored = part.reduce((n, y) => n + (y < 0 ? 0 : 1), 0);
      if (scored === 0) continue;
      // the chunk's mean loss weighted by its share of the scored tokens: the chunks sum to the batch mean
      const chunkLoss = (x: tf.Tensor2D) =>
        tf.reshape(
          tf.mul(crossEntropy(head(x), { targets: part, count: scored }), scored / count),
          [1, 1],
        ) as tf.Tensor2D;
      parts.push(recompute(chunkLoss, tf.slice(h, [start, 0], [rows, -1]), []));
    }
    return tf.reshape(tf.addN(parts), []) as tf.Scalar;
  });
}
