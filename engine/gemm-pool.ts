// engine/gemm.ts on several threads: worker threads that compile the tile kernel over the same shared wasm memory
// (the threaded build's), each taking boxes of C off one job list, the calling thread among them. Jobs go out by
// generation: the caller writes them, advances the generation and wakes the workers; every worker takes jobs until
// none is left, then checks in; the caller returns once all have. Each value of C is computed by one thread with the
// same order of sums as on one thread, so results are the same bits for any thread count.
import { Worker } from 'node:worker_threads';
import { startWorker } from '../util/worker.ts';
import { GEMM_SCRATCH, type GemmProblem, gemmBlock } from './gemm.ts';
import type { GemmKernel } from './gemm-kernel.ts';

/** A box of one problem's C: rows [i0, i1) and columns [j0, j1). */
export interface GemmJob {
  g: GemmProblem;
  rows: [number, number];
  cols: [number, number];
}

// The control words (Int32Array over a SharedArrayBuffer).
const GEN = 0; // advanced by the caller for each list of jobs
const COUNT = 1; // jobs in the list
const NEXT = 2; // next job to take
const CHECKED_IN = 3; // workers done with this generation
const SCRATCH = 4; // heap offset (values) of the scratch: GEMM_SCRATCH values per thread, the caller's first
const CONTROL_INTS = 5;

const JOB_INTS = 15;
export const MAX_JOBS = 256;

function writeJob(jobs: Int32Array, j: number, { g, rows, cols }: GemmJob): void {
  jobs.set(
    [
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

function readJob(jobs: Int32Array, j: number): GemmJob {
  const v = jobs.subarray(j * JOB_INTS, (j + 1) * JOB_INTS);
  return {
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

/** What a worker is started with (engine/gemm-worker.ts). */
export interface GemmWorkerInput {
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  jobs: SharedArrayBuffer;
  /** the worker's thread index (1 ...; the caller is 0): which scratch it packs into */
  index: number;
  fused: boolean;
}

/** Takes jobs off the list until none is left, thread `index` of the pool. */
function takeJobs(
  memory: WebAssembly.Memory,
  kernel: GemmKernel,
  control: Int32Array,
  jobs: Int32Array,
  index: number,
) {
  const heap = new Float32Array(memory.buffer); // the memory's current size: the caller may have grown it
  const scratch = control[SCRATCH] + index * GEMM_SCRATCH;
  const count = control[COUNT];
  for (let j = Atomics.add(control, NEXT, 1); j < count; j = Atomics.add(control, NEXT, 1)) {
    const { g, rows, cols } = readJob(jobs, j);
    gemmBlock(heap, kernel, g, scratch, rows, cols);
  }
}

/** The worker side: waits for each generation from the first, takes its jobs, checks in (never returns). */
export function serveJobs({ memory, control, jobs, index }: GemmWorkerInput, kernel: GemmKernel): never {
  const ctl = new Int32Array(control);
  const list = new Int32Array(jobs);
  for (let seen = 0; ; seen++) {
    awaitChange(ctl, GEN, seen);
    takeJobs(memory, kernel, ctl, list, index);
    Atomics.add(ctl, CHECKED_IN, 1);
    Atomics.notify(ctl, CHECKED_IN);
  }
}

const WORKER = new URL('./gemm-worker.ts', import.meta.url);
const running = new Set<Worker>();

/** Ends every pool's workers (before the backend whose memory they compute in is replaced). */
export function stopGemmWorkers(): void {
  for (const worker of running) worker.terminate();
  running.clear();
}

/** `threads` threads (the caller and threads - 1 workers) computing boxes of products in `memory`. */
export class GemmPool {
  readonly threads: number;
  private readonly control: Int32Array;
  private readonly jobs: Int32Array;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly kernel: GemmKernel,
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
      const input: GemmWorkerInput = { memory, control, jobs, index, fused };
      const worker = startWorker(WORKER, input);
      worker.unref();
      running.add(worker);
    }
  }

  /** Computes the jobs (at most 256) on all threads; returns when every one is done. */
  run(list: GemmJob[]): void {
    if (list.length > MAX_JOBS) throw new Error(`a GEMM pool takes at most ${MAX_JOBS} jobs at once`);
    const ctl = this.control;
    list.forEach((job, j) => writeJob(this.jobs, j, job));
    ctl[COUNT] = list.length;
    ctl[NEXT] = 0;
    ctl[CHECKED_IN] = 0;
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
    takeJobs(this.memory, this.kernel, ctl, this.jobs, 0);
    const workers = this.threads - 1;
    for (let n = Atomics.load(ctl, CHECKED_IN); n < workers; n = Atomics.load(ctl, CHECKED_IN))
      awaitChange(ctl, CHECKED_IN, n);
  }
}
