// Replacements for tfjs-backend-wasm 4.22 kernels that copy more than they must. Installed by initBackend on wasm.
// - Slice reads its input through backend.readSync, which copies the WHOLE input out of the wasm heap, and SplitV /
//   Unpack call that Slice once per piece: splitting a [16, 512, 256] tensor into 16 pieces took ~50 ms; these read
//   the input through a view of the heap instead (~1 ms).
// - Identity copies its input. tfjs clones (Identity) every tensor it saves for the backward pass, so on wasm each
//   saved activation was stored twice (~0.5 GB per step for the tiny preset at 8 x 512 tokens). Tensors are
//   immutable, so the replacement shares the data by reference count, as the cpu backend's Identity does.
// - Cast to the dtype a tensor already has copies it; tfjs's gradient of Multiply casts each operand so, twice per
//   product of a step's activations. The replacement shares the data, as Identity's does.
// - GatherV2 runs ~50 ns per value gathered (the embedding lookup of 1024 tokens of 288 took 14-18 ms); the
//   replacement copies whole slices (batchDims 0; others keep the original).
import * as tf from '@tensorflow/tfjs';
import { gemmBatchMatMul } from './wasm-matmul.ts';

/** The parts of the wasm backend (tfjs-backend-wasm's BackendWasm) a kernel uses. */
export interface WasmBackend {
  incRef(dataId: tf.DataId): void;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

type Args = { inputs: Record<string, tf.TensorInfo>; attrs: Record<string, unknown>; backend: WasmBackend };

/** Copies the box [begin, begin + size) of `x` into a new tensor, row by row along the innermost axis. */
function sliceBox(backend: WasmBackend, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype); // allocate first: growing the heap detaches earlier views
  const count = size.reduce((a, b) => a * b, 1);
  if (count === 0) return out;
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  const strides = tf.util.computeStrides(x.shape); // [rank - 1]: elements per step of each outer axis
  const row = size[rank - 1];
  const idx = new Array(rank - 1).fill(0); // odometer over the outer axes of the box
  for (let o = 0; o < count; o += row) {
    let offset = begin[rank - 1];
    for (let a = 0; a < rank - 1; a++) offset += (begin[a] + idx[a]) * strides[a];
    dst.set(src.subarray(offset, offset + row), o);
    for (let a = rank - 2; a >= 0 && ++idx[a] === size[a]; a--) idx[a] = 0;
  }
  return out;
}

function slice({ inputs: { x }, attrs, backend }: Args): tf.TensorInfo {
  const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin as number[], attrs.size as number[]);
  return sliceBox(backend, x, begin, size);
}

function splitV({ inputs: { x }, attrs, backend }: Args): tf.TensorInfo[] {
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits as number[] | number, axis);
  const begin = new Array(x.shape.length).fill(0);
  return sizes.map((s) => {
    const size = [...x.shape];
    size[axis] = s;
    const piece = sliceBox(backend, x, begin, size);
    begin[axis] += s;
    return piece;
  });
}

function unpack({ inputs: { value }, attrs, backend }: Args): tf.TensorInfo[] {
  const axis = (attrs.axis as number) < 0 ? (attrs.axis as number) + value.shape.length : (attrs.axis as number);
  const outShape = value.shape.filter((_, i) => i !== axis);
  const size = [...value.shape];
  size[axis] = 1;
  return Array.from({ length: value.shape[axis] }, (_, i) => {
    const begin = value.shape.map((_, a) => (a === axis ? i : 0));
    return { ...sliceBox(backend, value, begin, size), shape: outShape };
  });
}

function gatherV2({ inputs: { x, indices }, attrs, backend }: Args): tf.TensorInfo {
  const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
  const ids = Int32Array.from(backend.typedArrayFromHeap(indices));
  const axisDim = x.shape[axis];
  for (const i of ids)
    if (!(i >= 0 && i < axisDim)) throw new Error(`GatherV2: the index value ${i} is not in [0, ${axisDim - 1}]`);
  const outer = x.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)], x.dtype);
  const src = backend.typedArrayFromHeap(x); // after the allocation, which may grow the heap
  const dst = backend.typedArrayFromHeap(out);
  for (let o = 0, to = 0; o < outer; o++)
    for (let n = 0; n < ids.length; n++, to += inner) {
      const from = (o * axisDim + ids[n]) * inner;
      dst.set(src.subarray(from, from + inner), to);
    }
  return out;
}

function identity({ inputs: { x }, backend }: Args): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

const replacements: Record<string, (args: Args) => tf.TensorInfo | tf.TensorInfo[]> = {
  Slice: slice,
  SplitV: splitV,
  Unpack: unpack,
  Identity: identity,
};

/** Replaces the wasm backend's kernel `name` by wrap(its kernel function), once: a kernel already replaced stays. */
function replaceKernel(name: string, wrap: (original: tf.KernelFunc) => (args: Args) => unknown): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original || (original.kernelFunc as { ft?: boolean }).ft) return;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...original, kernelFunc: Object.assign(wrap(original.kernelFunc), { ft: true }) as never });
}

/**
 * Swaps the wasm backend's Slice, SplitV, Unpack and Identity kernels for the ones above (string tensors keep the
 * originals), its Cast for identity where the dtype stays, its GatherV2 for the one above where batchDims is 0, and
 * its BatchMatMul for engine/wasm-matmul.ts's.
 */
export function installWasmKernels(): void {
  replaceKernel(
    'Cast',
    (original) => (args) => (args.inputs.x.dtype === args.attrs.dtype ? identity(args) : original(args as never)),
  );
  replaceKernel(
    'GatherV2',
    (original) => (args) =>
      (args.attrs.batchDims as number) === 0 && args.inputs.x.dtype !== 'string' && args.inputs.x.dtype !== 'complex64'
        ? gatherV2(args)
        : original(args as never),
  );
  for (const [name, fn] of Object.entries(replacements))
    replaceKernel(name, (original) => (args) => {
      const input = Object.values(args.inputs)[0];
      return input.dtype === 'string' ? original(args as never) : fn(args);
    });
  replaceKernel('BatchMatMul', (original) => gemmBatchMatMul(original as never) as (args: Args) => unknown);
}
