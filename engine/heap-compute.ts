// What computes in one tfjs-backend-wasm memory: ft's kernels compiled over it (engine/gemm-kernel.ts,
// engine/rows-kernel.ts), the GEMM's scratch, and on the threaded build the pool that runs them on every thread.
// One per memory, made at first use and kept for the backend's life.
import * as tf from '@tensorflow/tfjs';
import { blas } from './blas.ts';
import { GEMM_SCRATCH } from './gemm.ts';
import { gemmKernel, relaxedSimd } from './gemm-kernel.ts';
import { callRows, JOBS_PER_THREAD, KernelPool, type PoolKernels, type RowsJob } from './kernel-pool.ts';
import { type RowsFunctionName, rowsKernel } from './rows-kernel.ts';
import { wasmThreads } from './wasm-threads.ts';

/** The parts of BackendWasm and its emscripten module ft's kernels use. */
export interface HeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  getMemoryOffset(dataId: tf.DataId): number;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: tf.DataId): boolean;
  wasm: {
    _malloc(bytes: number): number;
    /** the threaded build's memory */
    wasmMemory?: WebAssembly.Memory;
    /** the single-threaded build's instance exports, memory among them */
    asm?: { memory?: WebAssembly.Memory };
  };
}

export interface HeapCompute {
  memory: WebAssembly.Memory;
  kernels: PoolKernels;
  /** heap offset (values) of GEMM_SCRATCH values per thread */
  scratch: number;
  /** on the threaded build with more than one thread */
  pool?: KernelPool;
}
const computes = new WeakMap<WebAssembly.Memory, HeapCompute>();

export function heapMemory(backend: HeapBackend): WebAssembly.Memory {
  const memory = backend.wasm.wasmMemory ?? backend.wasm.asm?.memory;
  if (!memory) throw new Error('tfjs-backend-wasm exposes no memory to compute in');
  return memory;
}

export function heapCompute(backend: HeapBackend): HeapCompute {
  const memory = heapMemory(backend);
  let compute = computes.get(memory);
  if (compute) return compute;
  const threads = memory.buffer instanceof SharedArrayBuffer ? wasmThreads() : 1;
  const fused = relaxedSimd();
  const kernels: PoolKernels = { gemm: gemmKernel(memory, fused), rows: rowsKernel(memory), blas: blas() };
  const scratch = backend.wasm._malloc(4 * GEMM_SCRATCH * threads) / 4;
  const pool = threads > 1 ? new KernelPool(memory, kernels, threads, scratch, fused) : undefined;
  compute = { memory, kernels, scratch, pool };
  computes.set(memory, compute);
  return compute;
}

/**
 * Runs `f` with ft's kernels on the calling thread alone, the pool set aside until it settles: a measurement of one
 * thread in the same process, at the same time, as one of all of them (bench/train-case.ts). Nothing else may
 * compute meanwhile. On one thread (no pool) it just runs `f`.
 */
export async function onCallingThread<T>(backend: HeapBackend, f: () => Promise<T>): Promise<T> {
  const compute = heapCompute(backend);
  const { pool } = compute;
  compute.pool = undefined;
  try {
    return await f();
  } finally {
    compute.pool = pool;
  }
}

/**
 * Runs `f` with every product on ft's own kernels, OpenBLAS set aside (engine/blas.ts), on the current wasm backend:
 * ft's kernels give the same bits on any thread count, which OpenBLAS does not promise.
 */
export function withoutBlas<T>(f: () => T): T {
  if (tf.getBackend() !== 'wasm') return f();
  const { kernels } = heapCompute(tf.backend() as unknown as HeapBackend);
  const { blas } = kernels;
  kernels.blas = null;
  try {
    return f();
  } finally {
    kernels.blas = blas;
  }
}

/** x's float32 bits as an i32: how a kernel call takes a float argument (an f32.reinterpret in the kernel). */
export const f32Bits = (x: number): number => new Int32Array(Float32Array.of(x).buffer)[0];

/** What tfjs-backend-wasm can hold: its heap is a 32-bit wasm memory (allocation fails past 4 GiB, measured). */
export const WASM_HEAP_LIMIT = 2 ** 32;

/** Values below which rows-kernel calls run on the calling thread alone: waking the pool costs more. */
const MIN_POOL_VALUES = 1 << 16;

/** Rows of one matrix for a rows-kernel call: how many, and the call's arguments for rows [first, first + count). */
export interface RowBlock {
  rows: number;
  args: (first: number, count: number) => number[];
}

/**
 * Calls rows-kernel `fn` over `blocks` of rows `cols` long: on the pool when there is one and they hold at least
 * MIN_POOL_VALUES values, each block cut into bands for JOBS_PER_THREAD per thread; else one call per block here.
 */
export function runRowBlocks(compute: HeapCompute, fn: RowsFunctionName, cols: number, blocks: RowBlock[]): void {
  const values = cols * blocks.reduce((n, b) => n + b.rows, 0);
  const { pool } = compute;
  if (!pool || values < MIN_POOL_VALUES) {
    for (const b of blocks) callRows(compute.kernels.rows, { fn, args: b.args(0, b.rows) });
    return;
  }
  const parts = Math.ceil((JOBS_PER_THREAD * pool.threads) / blocks.length);
  const jobs: RowsJob[] = [];
  for (const b of blocks) {
    const band = Math.ceil(b.rows / parts);
    for (let first = 0; first < b.rows; first += band)
      jobs.push({ fn, args: b.args(first, Math.min(band, b.rows - first)) });
  }
  pool.run(jobs);
}

/** The wasm backend and the heap address (bytes) of each float32 tensor's values; null off wasm or for other dtypes. */
export function onHeap(...tensors: tf.Tensor[]): { backend: HeapBackend; at: number[] } | null {
  if (tf.getBackend() !== 'wasm' || tensors.some((t) => t.dtype !== 'float32')) return null;
  const backend = tf.backend() as unknown as HeapBackend;
  return { backend, at: tensors.map((t) => backend.getMemoryOffset(t.dataId)) };
}

/** A float32 tensor of `shape` whose values `write` puts at the heap address it gets (allocated before the others are read). */
export function written<T extends tf.Tensor>(backend: HeapBackend, shape: number[], write: (at: number) => void): T {
  const out = backend.makeOutput(shape, 'float32');
  write(backend.getMemoryOffset(out.dataId));
  return tf.engine().makeTensorFromTensorInfo(out) as T;
}

/** A float32 tensor's values where they are in the heap (valid until the next allocation, which may grow it). */
export function heapView(backend: HeapBackend, t: tf.Tensor): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}
