// The SwiGLU MLP's gating (Shazeer 2020), silu(gate) * up = gate sigmoid(gate) up, differentiable in gate and up,
// choosing per backend. On wasm one op whose forward and backward passes are one rows-kernel call each
// (engine/rows-kernel.ts, on every thread of the kernel pool) instead of tfjs's sigmoid and two multiplies and the
// ~9 element-wise kernels of their gradients over the [tokens, intermediate] activations; sigmoid(gate) is
// recomputed in the backward pass rather than kept. Other backends differentiate the tf ops.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { heapCompute, onHeap, runRowBlocks, written } from './heap-compute.ts';

export function swiglu<T extends tf.Tensor>(gate: T, up: T): T {
  const heap = onHeap(gate, up);
  if (!heap) return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up)) as T;
  const { backend } = heap;
  const cols = gate.shape[gate.rank - 1];
  const rows = gate.size / cols;
  const at = (t: tf.TensorInfo) => backend.getMemoryOffset(t.dataId);
  /** one call over all rows of tensors at these addresses, cut into bands for the pool */
  const run = (fn: 'swiglu' | 'swigluGrad', addresses: number[]) =>
    runRowBlocks(heapCompute(backend), fn, cols, [
      { rows, args: (first, n) => [...addresses.map((a) => a + first * 4 * cols), n, cols] },
    ]);
  const op = customGrad<[tf.Tensor, tf.Tensor], tf.Tensor>(([g, u], save) => {
    const value = written(backend, g.shape, (yAt) => run('swiglu', [at(g), at(u), yAt]));
    save([g, u]);
    return {
      value,
      gradFunc: (dy, [gs, us]) => {
        const [dg, du] = [backend.makeOutput(gs.shape, 'float32'), backend.makeOutput(us.shape, 'float32')];
        run('swigluGrad', [at(gs), at(us), at(dy), at(dg), at(du)]);
        return [dg, du].map((t) => tf.engine().makeTensorFromTensorInfo(t));
      },
    };
  });
  return op(gate, up) as T;
}
