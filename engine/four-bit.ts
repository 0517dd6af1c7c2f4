// A frozen 4-bit weight (QLoRA's base projections) in tfjs-backend-wasm's heap for a product. Its codes, the
// 256-entry pair table and the per-block scales are copied in (an eighth and a sixteenth of the float weight's size;
// double-quantized scales resolved there by engine/rows-kernel.ts's nestedScales); the weight itself stays in JS
// memory, outside the heap. For the GEMM the codes are unpacked into a float weight by unpack4, on every thread of the
// kernel pool; a product of a few rows reads the codes themselves (fourBitT). Either way the values are the same
// float32 products as quant/nf4.ts's dequantization, so the same bits. While a model generates, which reads every
// weight once per token, the copies stay in the heap from one product to the next (withResidentFourBit).
import * as tf from '@tensorflow/tfjs';
import {
  f32Bits,
  type HeapBackend,
  heapCompute,
  heapMemory,
  runRowBlocks,
  WASM_HEAP_LIMIT,
  written,
} from './heap-compute.ts';
import { FEW_ROWS_MAX, type RowsFunctionName } from './rows-kernel.ts';

/**
 * Block scales stored double-quantized (QLoRA): scale b = f32(f32(table[codes[b]] * nested[b / nestedBlock]) + offset),
 * computed in float32 as quant/nf4.ts does.
 */
export interface NestedScales {
  /** [blocks] */
  codes: Uint8Array;
  /** [256] */
  table: Float32Array;
  /** [ceil(blocks / nestedBlock)] */
  nested: Float32Array;
  nestedBlock: number;
  offset: number;
}

/** A 4-bit weight as packed codes, with what turns them into values. */
export interface FourBitCodes {
  /** [rows, cols] of the float weight, row-major */
  shape: [number, number];
  /** two codes per byte over the flattened weight: value 2i is byte i's first (high) nibble */
  codes: Uint8Array;
  /** [512]: byte b's two values, pairs[2b] and pairs[2b + 1] */
  pairs: Float32Array;
  blockSize: number;
  /** blocks of blockSize values over the flattened weight, the last perhaps partial */
  blocks: number;
  /** each block's float32 scale (absmax) [blocks], or how double quantization stores them */
  scales: Float32Array | NestedScales;
}

/** A 4-bit weight's codes, pair table and block scales copied into the heap (byte addresses). */
interface HeapCodes {
  codes: number;
  pairs: number;
  scales: number;
  bytes: number;
  free(): void;
}

/**
 * Most bytes of 4-bit weights a withResidentFourBit scope keeps in the heap by default: 1 GiB, and never more than
 * half of what the heap has yet to grow into (a run near the 4 GiB limit keeps less, or nothing).
 */
function residentBudget(backend: HeapBackend): number {
  return Math.min(2 ** 30, (WASM_HEAP_LIMIT - heapMemory(backend).buffer.byteLength) / 2);
}

/** The weights an open withResidentFourBit scope keeps in the heap. */
let resident: { budget: number; bytes: number; held: Map<FourBitCodes, HeapCodes> } | null = null;

/**
 * Runs f with 4-bit weights kept in the heap from their first product to the end, up to `budget` bytes (the rest
 * copied in for each product, as outside the scope), then frees them. For decoding, which reads every weight once
 * per token: copying the codes in each time was ~20% of a stories110M or TinyLlama NF4 token. Off wasm, or inside
 * another such scope, just f.
 */
export async function withResidentFourBit<T>(f: () => Promise<T>, budget?: number): Promise<T> {
  if (resident || tf.getBackend() !== 'wasm') return f();
  const backend = tf.backend() as unknown as HeapBackend;
  const scope = { budget: budget ?? residentBudget(backend), bytes: 0, held: new Map<FourBitCodes, HeapCodes>() };
  resident = scope;
  try {
    return await f();
  } finally {
    resident = null;
    for (const heap of scope.held.values()) heap.free();
  }
}

/** w in the heap for one call: kept from an open resident scope, else copied (its `free` a no-op when kept). */
function codesFor(backend: HeapBackend, w: FourBitCodes): HeapCodes {
  let held = resident?.held.get(w);
  if (!held) {
    const heap = copiedToHeap(backend, w);
    if (!resident || resident.bytes + heap.bytes > resident.budget) return heap;
    resident.held.set(w, heap);
    resident.bytes += heap.bytes;
    held = heap;
  }
  return { ...held, free: () => {} };
}

/** A new heap tensor holding `values`; written right after its allocation, as a later one may grow the heap. */
function copied(backend: HeapBackend, values: Uint8Array | Float32Array): tf.TensorInfo {
  const t = backend.makeOutput([values.length], values instanceof Uint8Array ? 'bool' : 'float32');
  backend.typedArrayFromHeap(t).set(values);
  return t;
}

/** The block scales in the heap: copied, or resolved there from their nested form on every thread. */
function scalesOnHeap(backend: HeapBackend, w: FourBitCodes): tf.TensorInfo {
  const { scales } = w;
  if (scales instanceof Float32Array) return copied(backend, scales.subarray(0, w.blocks));
  const parts = [copied(backend, scales.codes), copied(backend, scales.table), copied(backend, scales.nested)];
  const out = backend.makeOutput([w.blocks], 'float32');
  const [codes, table, nested, outAt] = [...parts, out].map((t) => backend.getMemoryOffset(t.dataId));
  const { nestedBlock } = scales;
  const offsetBits = f32Bits(scales.offset);
  // each nested block of scales is one "row" of the call
  runRowBlocks(heapCompute(backend), 'nestedScales', nestedBlock, [
    {
      rows: scales.nested.length,
      args: (first, count) => {
        const start = first * nestedBlock;
        const n = Math.min(count * nestedBlock, w.blocks - start);
        return [codes + start, table, nested + 4 * first, outAt + 4 * start, n, nestedBlock, offsetBits];
      },
    },
  ]);
  for (const t of parts) backend.disposeData(t.dataId);
  return out;
}

function copiedToHeap(backend: HeapBackend, w: FourBitCodes): HeapCodes {
  const parts = [copied(backend, w.codes), copied(backend, w.pairs), scalesOnHeap(backend, w)];
  const [codes, pairs, scales] = parts.map((t) => backend.getMemoryOffset(t.dataId));
  return {
    codes,
    pairs,
    scales,
    bytes: w.codes.length + 4 * (w.pairs.length + w.blocks),
    free: () => {
      for (const t of parts) backend.disposeData(t.dataId);
    },
  };
}

/** The float weight [rows, cols] of `w` as a new tensor, on the wasm backend (callers check tf.getBackend()). */
export function unpackedTensor2d(w: FourBitCodes): tf.Tensor2D {
  const backend = tf.backend() as unknown as HeapBackend;
  const n = w.shape[0] * w.shape[1];
  const { blockSize } = w;
  const heap = codesFor(backend, w);
  const out = written<tf.Tensor2D>(backend, w.shape, (outAt) =>
    // each block of values is one "row" of the call: jobs take whole blocks
    runRowBlocks(heapCompute(backend), 'unpack4', blockSize, [
      {
        rows: w.blocks,
        args: (first, count) => {
          const start = first * blockSize; // even: blockSize is
          const values = Math.min(count * blockSize, n - start);
          return [heap.codes + start / 2, heap.pairs, heap.scales + 4 * first, outAt + 4 * start, values, blockSize];
        },
      },
    ]),
  );
  heap.free();
  return out;
}

/** Whether fourBitProductT takes `rows` rows against w: a few, and w's 4-value vectors each inside one block. */
export function fourBitProductCovers(rows: number, w: FourBitCodes): boolean {
  return rows <= FEW_ROWS_MAX && w.shape[1] % 4 === 0 && w.blockSize % 4 === 0;
}

/**
 * x [rows, k] @ w^T for w [n, k] as 4-bit codes (fourBitProductCovers), on the wasm backend: the codes are read
 * as they are, each vector unpacked in registers (engine/rows-kernel.ts fourBitT), bands of w's rows on every thread.
 * The same bits as unpackedTensor2d's weight in a few-row product, without writing the float weight out.
 */
export function fourBitProductT(x: tf.Tensor2D, w: FourBitCodes): tf.Tensor2D {
  const backend = tf.backend() as unknown as HeapBackend;
  const [rows, k] = x.shape;
  const [n] = w.shape;
  const { blockSize } = w;
  const heap = codesFor(backend, w);
  const xAt = backend.getMemoryOffset(x.dataId);
  /** where row j of w starts: its code byte, its block's scale, the values left in that block */
  const rowStart = (j: number): number[] => {
    const start = j * k; // even, as k is
    return [heap.codes + start / 2, heap.scales + 4 * Math.floor(start / blockSize), blockSize - (start % blockSize)];
  };
  const out = written<tf.Tensor2D>(backend, [rows, n], (outAt) =>
    runRowBlocks(heapCompute(backend), `fourBitT${rows}` as RowsFunctionName, k, [
      {
        rows: n,
        args: (first, count) => {
          const [codes, scales, left] = rowStart(first);
          return [xAt, 4 * k, heap.pairs, 4 * n, k, blockSize, count, codes, scales, left, outAt + 4 * first].concat(
            rowStart(first + Math.ceil(count / 2)),
          );
        },
      },
    ]),
  );
  heap.free();
  return out;
}
