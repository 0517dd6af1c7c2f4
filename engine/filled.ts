// Float tensors whose values are computed in JS (e.g. a dequantized weight) written where the backend keeps them:
// on wasm straight into the heap, skipping a JS array of 4 bytes per value and the copy of it into the heap.
import * as tf from '@tensorflow/tfjs';
import type { WasmBackend } from './wasm-kernels.ts';

/** A float32 [rows, cols] tensor whose values `fill` writes into the array it is given (all of them). */
export function filledTensor2d(shape: [number, number], fill: (values: Float32Array) => void): tf.Tensor2D {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmBackend;
    const info = backend.makeOutput(shape, 'float32');
    fill(backend.typedArrayFromHeap(info) as Float32Array); // fill must not allocate tensors: that may move the heap
    return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor2D;
  }
  const values = new Float32Array(shape[0] * shape[1]);
  fill(values);
  return tf.tensor2d(values, shape);
}
