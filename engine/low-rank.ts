// y + scale · (x Aᵀ) Bᵀ: what a LoRA adds to its frozen base's output (adapters/lora.ts). As tf ops that is two
// products, a multiply and an add, four kernels per projection: 168 of the 420 a stories15M decode token ran with an
// adapter on every projection. With no gradient recorded and a few rows (decoding), on wasm, the same two products
// are engine/rows-kernel.ts calls made here and the rest a loop over the few values, so no kernel is dispatched: the
// same float32 operations in the same order as the ops, so the same bits.
import * as tf from '@tensorflow/tfjs';
import { heapCompute, heapMemory, onHeap, written } from './heap-compute.ts';
import { callRows } from './kernel-pool.ts';
import { mmT } from './matmul.ts';
import { FEW_ROWS_MAX, type RowsFunctionName } from './rows-kernel.ts';

/** y [n, out] + scale · (x [n, in] · a [r, in]ᵀ) · b [out, r]ᵀ, differentiable in all of them. */
export function addLowRank(y: tf.Tensor2D, x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, scale: number): tf.Tensor2D {
  const rows = x.shape[0];
  const heap = !tf.engine().isTapeOn() && rows <= FEW_ROWS_MAX ? onHeap(y, x, a, b) : null;
  if (!heap) return tf.tidy(() => tf.add(y, mmT(tf.mul(mmT(x, a), scale), b)));

  const { backend, at } = heap;
  const [yAt, xAt, aAt, bAt] = at;
  const [r, k] = a.shape;
  const n = b.shape[0];
  const { kernels } = heapCompute(backend);
  const fn = `fewRowsT${rows}` as RowsFunctionName; // C = A · Wᵀ, W's rows contiguous
  const down = backend.makeOutput([rows, r], 'float32'); // x Aᵀ, then times scale
  const downAt = backend.getMemoryOffset(down.dataId);
  const out = written<tf.Tensor2D>(backend, [rows, n], (outAt) => {
    callRows(kernels.rows, { fn, args: [xAt, 4 * k, aAt, 4 * k, downAt, 4 * r, k, r] });
    const values = new Float32Array(heapMemory(backend).buffer); // after both allocations, which may grow it
    const [d, s] = [downAt / 4, Math.fround(scale)]; // the float32 scalar tf.mul would make of it
    for (let i = 0; i < rows * r; i++) values[d + i] *= s;
    callRows(kernels.rows, { fn, args: [downAt, 4 * r, bAt, 4 * r, outAt, 4 * n, r, n] });
    const [o, yv] = [outAt / 4, yAt / 4];
    for (let i = 0; i < rows * n; i++) values[o + i] += values[yv + i];
  });
  backend.disposeData(down.dataId);
  return out;
}
