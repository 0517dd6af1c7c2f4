// A frozen 4-bit weight's float values (QLoRA's base projections) written out for one product. On wasm the codes,
// the per-block scales and the 256-entry pair table are copied into the heap for the call (an eighth and a
// sixteenth of the float copy's size) and unpacked by engine/rows-kernel.ts's unpack4 on every thread of the kernel
// pool; the weight itself stays in JS memory, outside the heap. The values are the same float32 products as
// quant/nf4.ts's dequantization, so the same bits.
import * as tf from '@tensorflow/tfjs';
import { type HeapBackend, heapCompute, runRowBlocks } from './heap-compute.ts';

/** A 4-bit weight as packed codes, with what turns them into values. */
export interface FourBitCodes {
  /** [rows, cols] of the float weight, row-major */
  shape: [number, number];
  /** two codes per byte over the flattened weight: value 2i is byte i's first (high) nibble */
  codes: Uint8Array;
  /** [512]: byte b's two values, pairs[2b] and pairs[2b + 1] */
  pairs: Float32Array;
  blockSize: number;
  /** one float32 scale per block of blockSize values (absmax, double quantization resolved) */
  scales(): Float32Array;
}

/** The float weight [rows, cols] of `w` as a new tensor, on the wasm backend (callers check tf.getBackend()). */
export function unpackedTensor2d(w: FourBitCodes): tf.Tensor2D {
  const backend = tf.backend() as unknown as HeapBackend;
  const [rows, cols] = w.shape;
  const n = rows * cols;
  const scales = w.scales();
  const blocks = scales.length;
  // allocate everything first: growing the heap detaches earlier views
  const codes = backend.makeOutput([w.codes.length], 'bool');
  const pairs = backend.makeOutput([w.pairs.length], 'float32');
  const scaleValues = backend.makeOutput([blocks], 'float32');
  const out = backend.makeOutput(w.shape, 'float32');
  (backend.typedArrayFromHeap(codes) as Uint8Array).set(w.codes);
  (backend.typedArrayFromHeap(pairs) as Float32Array).set(w.pairs);
  (backend.typedArrayFromHeap(scaleValues) as Float32Array).set(scales);
  const [codesAt, pairsAt, scalesAt, outAt] = [codes, pairs, scaleValues, out].map((t) =>
    backend.getMemoryOffset(t.dataId),
  );
  const { blockSize } = w;
  // each block of values is one "row" of the call: jobs take whole blocks
  runRowBlocks(heapCompute(backend), 'unpack4', blockSize, [
    {
      rows: blocks,
      args: (first, count) => {
        const start = first * blockSize; // even: blockSize is
        const values = Math.min(count * blockSize, n - start);
        return [codesAt + start / 2, pairsAt, scalesAt + 4 * first, outAt + 4 * start, values, blockSize];
      },
    },
  ]);
  for (const t of [codes, pairs, scaleValues]) backend.disposeData(t.dataId);
  return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D;
}
