// Token cross-entropy, the largest tensors of a training step ([tokens, vocab] logits, probabilities and their
// gradient), computed the way each backend handles best; and the chunked form that never holds all of them at once.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
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
 * On wasm the gradient is written out, (softmax - onehot) / count on scored rows, so the [N, V] tensors are walked a
 * few times instead of the ~15 of tf.logSoftmax's chain and its autodiff (tf.softmax is one vectorized wasm kernel,
 * tf.exp runs ~3x slower per element there). Other backends differentiate logSoftmax.
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

function fusedCrossEntropy(targets: Int32Array, count: number): (z: tf.Tensor2D) => tf.Scalar {
  const op = customGrad<[tf.Tensor2D], tf.Scalar>(([z], save) => {
    const [N, V] = z.shape;
    const { flatIndex, scored } = picks(targets, V);
    // log-sum-exp from the probabilities, stably: lse = max(z) - log(max(probs)), as max(probs) = 1 / sum(exp(z - max z)) >= 1/V
    const probs = tf.softmax(z) as tf.Tensor2D; // [N, V]
    const lse = tf.sub(tf.max(z, -1), tf.log(tf.max(probs, -1))); // [N]
    const picked = tf.gather(tf.reshape(z, [-1]), tf.tensor1d(flatIndex, 'int32')); // [count] target logits
    const value = tf.div<tf.Scalar>(tf.sub(tf.sum(tf.mul(lse, scored)), tf.sum(picked)), count);
    save([probs]);
    return {
      value,
      gradFunc: (dy, [p]) => {
        const rowScale = tf.mul(tf.reshape(tf.tensor1d(scored), [N, 1]), tf.div(dy, count)); // [N, 1]: dy/count on scored rows, 0 elsewhere
        // int32 one-hot then a cast: tfjs-wasm 4.22's OneHot with dtype float32 writes integer bit patterns
        return tf.mul(tf.sub(p, tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), V), 'float32')), rowScale);
      },
    };
  });
  return op;
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
