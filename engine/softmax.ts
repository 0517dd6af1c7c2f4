// The softmaxes of attention and their backward pass, each a named function that chooses per backend: on wasm one
// rows-kernel call per block of rows (engine/rows-kernel.ts, on every thread of the kernel pool), where tfjs would run
// an add, a softmax, and in backward a multiply, a sum, a subtract and a multiply, each a pass on one thread.
import * as tf from '@tensorflow/tfjs';
import { heapCompute, onHeap, runRowBlocks, written } from './heap-compute.ts';

/**
 * softmax(scores + mask) over the last axis: scores [R, G, M, S], mask [R, M, S] added to each of the G blocks of
 * its r. Not differentiable itself (attention's backward pass calls softmaxBackward).
 */
export function maskedSoftmax(scores: tf.Tensor4D, mask: tf.Tensor3D): tf.Tensor4D {
  const [R, G, M, S] = scores.shape;
  const heap = onHeap(scores, mask);
  if (!heap) return tf.tidy(() => tf.softmax(tf.add(scores, tf.expandDims(mask, 1))));
  const {
    backend,
    at: [x, m],
  } = heap;
  const rowBytes = 4 * S;
  return written(backend, scores.shape, (y) =>
    runRowBlocks(
      heapCompute(backend),
      'maskedSoftmax',
      S,
      Array.from({ length: R * G }, (_, block) => ({
        rows: M,
        args: (first: number, count: number) => {
          const row = block * M + first;
          const maskRow = Math.floor(block / G) * M + first;
          return [x + row * rowBytes, m + maskRow * rowBytes, y + row * rowBytes, count, S];
        },
      })),
    ),
  );
}

/** softmax's backward pass over the last axis: dScores = probs (dProbs - rowsum(dProbs probs)). */
export function softmaxBackward<T extends tf.Tensor>(probs: T, dProbs: T): T {
  const heap = onHeap(probs, dProbs);
  if (!heap) return tf.tidy(() => tf.mul(probs, tf.sub(dProbs, tf.sum(tf.mul(dProbs, probs), -1, true)))) as T;
  const {
    backend,
    at: [p, dp],
  } = heap;
  const S = probs.shape[probs.rank - 1];
  const rows = probs.size / S;
  return written(backend, probs.shape, (dx) =>
    runRowBlocks(heapCompute(backend), 'softmaxGrad', S, [
      { rows, args: (first, count) => [p + first * 4 * S, dp + first * 4 * S, dx + first * 4 * S, count, S] },
    ]),
  );
}
