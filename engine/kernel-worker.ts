// A worker thread of engine/kernel-pool.ts: ft's kernels compiled over the pool's shared memory, serving its jobs.
// A throw or an exit is reported on the process's pool channel, whose watchdog ends the run (engine/wasm-threads.ts).
import { createRequire } from 'node:module';
import { workerInput } from '../util/worker.ts';
import { blas } from './blas.ts';
import { gemmKernel } from './gemm-kernel.ts';
import { type PoolWorkerInput, serveJobs } from './kernel-pool.ts';
import { rowsKernel } from './rows-kernel.ts';

const { reportFailures } = createRequire(import.meta.url)('./pool-failures.cjs') as {
  reportFailures(label: string): void;
};
reportFailures('kernel worker thread');
const input = workerInput<PoolWorkerInput>();
const kernels = {
  gemm: gemmKernel(input.memory, input.fused),
  rows: rowsKernel(input.memory),
  blas: input.blasFile === undefined ? null : blas(input.blasFile), // throws, and the pool reports it, if it cannot load
};
serveJobs(input, kernels);
