// RMSNorm (Zhang & Sennrich 2019), y = x / sqrt(mean(x^2) + eps) * weight over the last axis, differentiable in x
// (the weight is frozen), choosing per backend. On wasm one op whose forward and backward passes are one
// rows-kernel call each (engine/rows-kernel.ts, on every thread of the kernel pool) instead of tfjs's square, mean,
// add, rsqrt, two multiplies and the ~12 kernels of their gradients (one of them a ones tensor of x's shape built
// in JS); the backward pass uses dx = r (dy w) - x r^3 mean(dy w x), r = 1 / sqrt(mean(x^2) + eps), with r kept from
// forward. Other backends differentiate the tf ops.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { f32Bits, heapCompute, onHeap, runRowBlocks, written } from './heap-compute.ts';

export function rmsNorm<T extends tf.Tensor>(x: T, weight: tf.Tensor1D, eps: number): T {
  const heap = onHeap(x, weight);
  if (!heap) return plainRmsNorm(x, weight, eps);
  const { backend } = heap;
  const [xAt, wAt] = heap.at;
  const cols = x.shape[x.rank - 1];
  const rows = x.size / cols;
  const op = customGrad<[tf.Tensor], tf.Tensor>(([xi], save) => {
    const compute = heapCompute(backend);
    const r = backend.makeOutput([rows], 'float32');
    const y = backend.makeOutput(xi.shape, 'float32');
    const [rAt, yAt] = [r, y].map((t) => backend.getMemoryOffset(t.dataId));
    const epsBits = f32Bits(eps);
    runRowBlocks(compute, 'rmsNorm', cols, [
      {
        rows,
        args: (first, n) => [xAt + first * 4 * cols, yAt + first * 4 * cols, wAt, rAt + 4 * first, epsBits, n, cols],
      },
    ]);
    const rTensor = tf.engine().makeTensorFromTensorInfo(r);
    save([xi, rTensor]);
    return {
      value: tf.engine().makeTensorFromTensorInfo(y),
      gradFunc: (dy, [xs, rs]) => {
        const [xsAt, dyAt, rsAt] = [xs, dy, rs].map((t) => backend.getMemoryOffset(t.dataId));
        return written(backend, xs.shape, (dxAt) =>
          runRowBlocks(compute, 'rmsNormGrad', cols, [
            {
              rows,
              args: (first, n) => {
                const at = first * 4 * cols;
                return [xsAt + at, dyAt + at, dxAt + at, wAt, rsAt + 4 * first, n, cols];
              },
            },
          ]),
        );
      },
    };
  });
  return op(x) as T;
}

function plainRmsNorm<T extends tf.Tensor>(x: T, weight: tf.Tensor1D, eps: number): T {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight);
  }) as T;
}
