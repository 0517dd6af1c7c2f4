// Token cross-entropy, the largest tensors of a training step ([tokens, vocab] logits, probabilities and their
// gradient), computed the way each backend handles best; and the chunked form that never holds all of them at once.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { type HeapBackend, heapCompute, heapView, runRowBlocks, written } from './heap-compute.ts';
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
 * On wasm the [N, V] tensors are walked three times instead of the ~15 of tf.logSoftmax's chain and its autodiff, by
 * engine/rows-kernel.ts on every thread of the pool: twice in forward for each row's max and sum of exp (the loss is
 * logsumexp - z[target], stable for any logits), once in backward writing (softmax - onehot) dy / count on scored
 * rows. The logits are kept for the backward pass in place of the probabilities. Other backends differentiate
 * logSoftmax.
 */
export function crossEntropy(logits: tf.Tensor2D, { targets, count }: ScoredTargets): tf.Scalar {
  if (count === 0) return tf.tidy(() => tf.mul(tf.sum(logits), 0)) as tf.Scalar;
  return tf.tidy(() =>
    tf.getBackend() === 'wasm' ? rowsCrossEntropy(targets, count)(logits) : plainCrossEntropy(logits, targets, count),
  );
}

function plainCrossEntropy(z: tf.Tensor2D, targets: Int32Array, count: number): tf.Scalar {
  const flat: number[] = [];
  targets.forEach((y, n) => {
    if (y >= 0) flat.push(n * z.shape[1] + y);
  });
  const logProbs = tf.reshape(tf.logSoftmax(z), [-1]);
  return tf.div(tf.neg(tf.sum(tf.gather(logProbs, tf.tensor1d(flat, 'int32')))), count) as tf.Scalar;
}

function rowsCrossEntropy(targets: Int32Array, count: number): (z: tf.Tensor2D) => tf.Scalar {
  return customGrad<[tf.Tensor2D], tf.Scalar>(([z], save) => {
    const [N, V] = z.shape;
    const backend = tf.backend() as unknown as HeapBackend;
    const compute = heapCompute(backend);
    const zAt = backend.getMemoryOffset(z.dataId);
    // [N, 2]: each row's max and sum of exp(z - max)
    const stats = written(backend, [N, 2], (at) =>
      runRowBlocks(compute, 'maxSumExp', V, [
        { rows: N, args: (first, rows) => [zAt + first * 4 * V, at + first * 8, rows, V] },
      ]),
    );
    const ms = heapView(backend, stats);
    const zs = heapView(backend, z);
    const lse = new Float32Array(N);
    let total = 0;
    for (let n = 0; n < N; n++) {
      lse[n] = ms[2 * n] + Math.log(ms[2 * n + 1]);
      if (targets[n] >= 0) total += lse[n] - zs[n * V + targets[n]];
    }
    stats.dispose();
    save([z]);
    return {
      value: tf.scalar(total / count),
      gradFunc: (dy, [zSaved]) => {
        // as float32 tensor ops would round it: dy / count, then the softmax times that on scored rows, 0 elsewhere
        const scale = Math.fround((dy.dataSync() as Float32Array)[0] / count);
        const rows = new Float32Array(2 * N); // [N, 2]: each row's lse, then its scale (0 where not scored)
        lse.forEach((l, n) => {
          rows[2 * n] = l;
          rows[2 * n + 1] = targets[n] >= 0 ? scale : 0;
        });
        const shiftScale = tf.tensor2d(rows, [N, 2]);
        const savedAt = backend.getMemoryOffset(zSaved.dataId);
        const ssAt = backend.getMemoryOffset(shiftScale.dataId);
        const g = written<tf.Tensor2D>(backend, [N, V], (at) =>
          runRowBlocks(compute, 'expShifted', V, [
            {
              rows: N,
              args: (first, rows) => [savedAt + first * 4 * V, at + first * 4 * V, ssAt + first * 8, rows, V],
            },
          ]),
        );
        const gs = heapView(backend, g);
        targets.forEach((y, n) => {
          if (y >= 0) gs[n * V + y] -= scale;
        });
        return g;
      },
    };
  });
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
