// Float tensors whose values are computed in JS (a dequantized weight, a loss gradient) written where the backend keeps
// them: on wasm straight into the heap, skipping a JS array of 4 bytes per value and the copy of it into the heap,
// and with the input tensors read in place there.
import * as tf from '@tensorflow/tfjs';
import type { WasmBackend } from './wasm-kernels.ts';

/**
 * A float32 [rows, cols] tensor whose values `fill` writes into the array it is given (all of them). `fill` also gets
 * the values of `inputs` (float32 tensors), in order: on wasm views of the heap, elsewhere copies; it must not
 * allocate tensors (that may move the heap under the views).
 */
export function filledTensor2d(
  shape: [number, number],
  fill: (values: Float32Array, ...inputs: Float32Array[]) => void,
  inputs: tf.Tensor[] = [],
): tf.Tensor2D {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmBackend;
    const info = backend.makeOutput(shape, 'float32'); // allocate first: growing the heap detaches earlier views
    const views = inputs.map((t) => backend.typedArrayFromHeap(t) as Float32Array);
    fill(backend.typedArrayFromHeap(info) as Float32Array, ...views);
    return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor2D;
  }
  const values = new Float32Array(shape[0] * shape[1]);
  fill(values, ...inputs.map((t) => t.dataSync() as Float32Array));
  return tf.tensor2d(values, shape);
}
