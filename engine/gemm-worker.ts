// A worker thread of engine/gemm-pool.ts: the tile kernel compiled over the pool's shared memory, serving its jobs.
// A throw or an exit is reported on the process's pool channel, whose watchdog ends the run (engine/wasm-threads.ts).
import { createRequire } from 'node:module';
import { workerInput } from '../util/worker.ts';
import { type GemmWorkerInput, serveJobs } from './gemm-pool.ts';
import { gemmKernel } from './gemm-kernel.ts';

const { reportFailures } = createRequire(import.meta.url)('./pool-failures.cjs') as {
  reportFailures(label: string): void;
};
reportFailures('GEMM worker thread');
const input = workerInput<GemmWorkerInput>();
serveJobs(input, gemmKernel(input.memory, input.fused));
