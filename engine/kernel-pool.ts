// ft's wasm kernels on several threads: worker threads that compile them (engine/gemm-kernel.ts, engine/rows-kernel.ts)
// over the same shared wasm memory (the threaded build's), each taking jobs off one list, the calling thread among
// them. A job is a box of a product's C (engine/gemm.ts) or a call of a rows kernel on some rows. Jobs go out by
// generation: the caller writes them, advances the generation and wakes the workers; every worker takes jobs until
// none is left, then checks in; the caller returns once all have. Each output value is computed by one thread in the
// same order as on one thread, so results are the same bits for any thread count.
import { Worker } from 'node:worker_threads';
import { startWorker } from '../util/worker.ts';
import type { Blas } from './blas.ts';
import { boxProblem, GEMM_SCRATCH, type GemmProblem, gemmBlock } from './gemm.ts';
import type { GemmKernel } from './gemm-kernel.ts';
import { ROWS_FUNCTIONS, type RowsFunctionName, type RowsKernel } from './rows-kernel.ts';

/** A box of one problem's C: rows [i0, i1) and columns [j0, j1). */
export interface GemmBox {
  g: GemmProblem;
  rows: [number, number];
  cols: [number, number];
}

/** A box computed by OpenBLAS, or by ft's GEMM. */
export interface GemmJob extends GemmBox {
  blas: boolean;
}

/** A call of one rows-kernel function (its arguments: addresses and counts). */
export interface RowsJob {
  fn: RowsFunctionName;
  args: number[];
}

export type PoolJob = GemmJob | RowsJob;

/** Runs one rows-kernel call here. */
export function callRows(rows: RowsKernel, { fn, args }: RowsJob): void {
  (rows[fn] as (...values: number[]) => void)(...args);
}

/** The kernels every thread of a pool has, compiled over the pool's memory. */
export interface PoolKernels {
  gemm: GemmKernel;
  rows: RowsKernel;
  /** the machine's OpenBLAS, for the GEMM jobs marked for it (engine/blas.ts) */
  blas: Blas | null;
}

/** Computes a box of C here: on OpenBLAS (job.blas), or on ft's GEMM with `scratch` to pack into. */
export function computeBox(heap: Float32Array, kernels: PoolKernels, scratch: number, job: GemmJob): void {
  const { g, rows, cols } = job;
  if (!job.blas) gemmBlock(heap, kernels.gemm, g, scratch, rows, cols);
  else if (kernels.blas) kernels.blas.sgemm(heap, boxProblem(g, rows, cols));
  else throw new Error('a GEMM job for OpenBLAS on a thread that has not loaded it');
}

// The control words (Int32Array over a SharedArrayBuffer).
const GEN = 0; // advanced by the caller for each list of jobs
const COUNT = 1; // jobs in the list
const NEXT = 2; // next job to take
const CHECKED_IN = 3; // workers done with this generation
const SCRATCH = 4; // heap offset (values) of the scratch: GEMM_SCRATCH values per thread, the caller's first
const PAGES = 5; // the memory's size in 64 KiB pages as the caller sees it, for this generation
const CONTROL_INTS = 6;

const JOB_INTS = 16; // the job's kind (GEMM_KIND, BLAS_KIND, or 1 + the rows function's index), then its values
const GEMM_KIND = 0;
const BLAS_KIND = -1;
export const MAX_JOBS = 256;

/**
 * Jobs per thread a piece of work is cut into. With one each, the caller sat waiting for a worker that woke late (a
 * stories15M step on 2 threads spent ~290 ms of ~2.7 s there); with several, whoever is free takes the next.
 */
export const JOBS_PER_THREAD = 4;

function writeJob(jobs: Int32Array, j: number, job: PoolJob): void {
  if ('fn' in job) {
    const index = ROWS_FUNCTIONS.indexOf(job.fn);
    if (index < 0 || job.args.length > JOB_INTS - 1) throw new Error(`no pool job for rows kernel ${job.fn}`);
    jobs.set([1 + index, ...job.args], j * JOB_INTS);
    return;
  }
  const { g, rows, cols } = job;
  jobs.set(
    [
      job.blas ? BLAS_KIND : GEMM_KIND,
      g.m,
      g.n,
      g.k,
      g.a.offset,
      g.a.rowStride,
      g.a.colStride,
      g.b.offset,
      g.b.rowStride,
      g.b.colStride,
      g.c,
      g.ldc,
    ].concat(rows, cols),
    j * JOB_INTS,
  );
}

function readJob(jobs: Int32Array, j: number): PoolJob {
  const kind = jobs[j * JOB_INTS];
  const v = jobs.subarray(j * JOB_INTS + 1, (j + 1) * JOB_INTS);
  if (kind > 0) return { fn: ROWS_FUNCTIONS[kind - 1], args: Array.from(v) };
  return {
    blas: kind === BLAS_KIND,
    g: {
      m: v[0],
      n: v[1],
      k: v[2],
      a: { offset: v[3], rowStride: v[4], colStride: v[5] },
      b: { offset: v[6], rowStride: v[7], colStride: v[8] },
      c: v[9],
      ldc: v[10],
    },
    rows: [v[11], v[12]],
    cols: [v[13], v[14]],
  };
}

/**
 * Returns once control[i] is no longer `value`: spinning first, since products come close together in a step and a
 * sleeping thread takes ~0.1 ms to wake here (a [256, 48] x [48, 256] product takes 0.2), then sleeping.
 */
function awaitChange(control: Int32Array, i: number, value: number): void {
  for (let spin = 0; spin < SPINS; spin++) if (Atomics.load(control, i) !== value) return;
  Atomics.wait(control, i, value);
}
const SPINS = 20_000; // ~0.3 ms

/** What a worker is started with (engine/kernel-worker.ts). */
export interface PoolWorkerInput {
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  jobs: SharedArrayBuffer;
  /** the worker's thread index (1 ...; the caller is 0): which scratch it packs into */
  index: number;
  fused: boolean;
  /** the OpenBLAS file the caller's GEMM jobs run on, if any (blas()'s argument) */
  blasFile?: string;
}

/**
 * The memory's buffer at least `pages` long: the caller may have grown the memory since this thread last looked. A
 * thread learns of another's grow when V8 next checks its interrupts, so its `buffer` can still be the old, shorter
 * one: a worker spinning on a generation word, as here, saw the old length in 3-5 of 4000 generations that followed
 * a grow, and grow(0) refreshed it every time (Node 20). Kernels in wasm see the whole memory regardless; the GEMM's
 * edge tiles are copied in JS, where a short view drops writes without a word (C's last rows left as the heap had
 * them: the likely cause of 2-thread NF4 runs whose loss moved in the fifth digit).
 */
function currentBuffer(memory: WebAssembly.Memory, pages: number): ArrayBufferLike {
  if (memory.buffer.byteLength < pages * PAGE_BYTES) memory.grow(0);
  if (memory.buffer.byteLength < pages * PAGE_BYTES)
    throw new Error(
      `kernel pool: the shared memory's buffer holds ${memory.buffer.byteLength} bytes, the caller's ${pages} pages`,
    );
  return memory.buffer;
}
const PAGE_BYTES = 65536;

/** Takes jobs off the list until none is left, thread `index` of the pool. */
function takeJobs(
  memory: WebAssembly.Memory,
  kernels: PoolKernels,
  control: Int32Array,
  jobs: Int32Array,
  index: number,
) {
  const heap = new Float32Array(currentBuffer(memory, control[PAGES]));
  const scratch = control[SCRATCH] + index * GEMM_SCRATCH;
  const count = control[COUNT];
  for (let j = Atomics.add(control, NEXT, 1); j < count; j = Atomics.add(control, NEXT, 1)) {
    const job = readJob(jobs, j);
    if ('fn' in job) callRows(kernels.rows, job);
    else computeBox(heap, kernels, scratch, job);
  }
}

/** The worker side: waits for each generation from the first, takes its jobs, checks in (never returns). */
export function serveJobs({ memory, control, jobs, index }: PoolWorkerInput, kernels: PoolKernels): never {
  const ctl = new Int32Array(control);
  const list = new Int32Array(jobs);
  for (let seen = 0; ; seen++) {
    awaitChange(ctl, GEN, seen);
    takeJobs(memory, kernels, ctl, list, index);
    Atomics.add(ctl, CHECKED_IN, 1);
    Atomics.notify(ctl, CHECKED_IN);
  }
}

const WORKER = new URL('./kernel-worker.ts', import.meta.url);
const running = new Set<Worker>();

/** Ends every pool's workers (before the backend whose memory they compute in is replaced). */
export function stopKernelWorkers(): void {
  for (const worker of running) worker.terminate();
  running.clear();
}

/** `threads` threads (the caller and threads - 1 workers) running kernel jobs in `memory`. */
export class KernelPool {
  readonly threads: number;
  private readonly control: Int32Array;
  private readonly jobs: Int32Array;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly kernels: PoolKernels,
    threads: number,
    scratch: number,
    fused: boolean,
  ) {
    this.threads = threads;
    const control = new SharedArrayBuffer(4 * CONTROL_INTS);
    const jobs = new SharedArrayBuffer(4 * JOB_INTS * MAX_JOBS);
    this.control = new Int32Array(control);
    this.jobs = new Int32Array(jobs);
    this.control[SCRATCH] = scratch;
    for (let index = 1; index < threads; index++) {
      const input: PoolWorkerInput = { memory, control, jobs, index, fused, blasFile: kernels.blas?.file };
      const worker = startWorker(WORKER, input);
      worker.unref();
      running.add(worker);
    }
  }

  /** Runs the jobs on all threads, MAX_JOBS at a time; returns when every one is done. */
  run(list: PoolJob[]): void {
    for (let s = 0; s < list.length; s += MAX_JOBS) this.runAtOnce(list.slice(s, s + MAX_JOBS));
  }

  private runAtOnce(list: PoolJob[]): void {
    const ctl = this.control;
    list.forEach((job, j) => writeJob(this.jobs, j, job));
    ctl[COUNT] = list.length;
    ctl[PAGES] = this.memory.buffer.byteLength / PAGE_BYTES;
    ctl[NEXT] = 0;
    ctl[CHECKED_IN] = 0;
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
    takeJobs(this.memory, this.kernels, ctl, this.jobs, 0);
    const workers = this.threads - 1;
    for (let n = Atomics.load(ctl, CHECKED_IN); n < workers; n = Atomics.load(ctl, CHECKED_IN))
      awaitChange(ctl, CHECKED_IN, n);
  }
}
