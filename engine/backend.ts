// Chooses the tfjs backend: native TensorFlow (GPU, then CPU) when installed, else wasm, else the plain JS cpu backend,
// and how many threads it computes with (all the cores this process may use, unless told).
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { FtError } from '../util/errors.ts';
import { blas } from './blas.ts';
import { installWasmKernels } from './wasm-kernels.ts';
import { MAX_WASM_THREADS, registerWasm, wasmThreads } from './wasm-threads.ts';

export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
export type BackendChoice = BackendName | 'auto';

/** Each loader registers its backend with tfjs for `threads` threads, or throws when it is not installed or cannot load. */
const loaders: Record<BackendName, (threads: number) => Promise<string>> = {
  async tensorflow(threads) {
    // libtensorflow sizes its intra-op pool from this variable when it starts; a value the user set is kept
    process.env.TF_NUM_INTRAOP_THREADS ??= String(threads);
    // Both native packages register a backend named 'tensorflow'; the GPU build wins when both load.
    const failures: string[] = [];
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        await import(pkg);
        return pkg;
      } catch (e) {
        failures.push(`${pkg}: ${firstLine(e)}`);
      }
    }
    throw new Error(failures.join('; '));
  },
  async wasm(threads) {
    registerWasm(threads);
    return '@tensorflow/tfjs-backend-wasm';
  },
  async cpu() {
    await import('@tensorflow/tfjs-backend-cpu');
    return '@tensorflow/tfjs-backend-cpu';
  },
};

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}

export interface BackendInfo {
  name: BackendName;
  /** npm package that provided it */
  pkg: string;
  /** threads its products run on (the JS cpu backend always computes on one) */
  threads: number;
  /** on wasm, the OpenBLAS its products of 6 rows and more run on (engine/blas.ts), if any */
  blas?: string;
}

/** The cores this process may use (its CPU affinity), the default thread count. */
export function defaultThreads(): number {
  return availableParallelism();
}

/** Threads each backend can use of those asked for: wasm's pool has at most MAX_WASM_THREADS, the cpu backend one. */
function usableThreads(name: BackendName, asked: number): number {
  if (name === 'cpu') return 1;
  if (name === 'wasm') return Math.min(asked, MAX_WASM_THREADS);
  return asked;
}

/**
 * Initializes tfjs on the requested backend, or on the best one present for 'auto', computing on `threads` threads
 * (default: every core this process may use; 1 is the single-threaded wasm build).
 * A backend asked for by name that cannot load is an error naming what is missing.
 */
export async function initBackend(choice: BackendChoice = 'auto', threads = defaultThreads()): Promise<BackendInfo> {
  if (choice !== 'auto' && !BACKENDS.includes(choice)) {
    throw new FtError(`unknown backend '${choice}': expected one of auto, ${BACKENDS.join(', ')}`);
  }
  const order: BackendName[] = choice === 'auto' ? [...BACKENDS] : [choice];
  const failures: string[] = [];
  for (const name of order) {
    let pkg: string;
    const used = usableThreads(name, threads);
    try {
      pkg = await loaders[name](used);
      if (!(await tf.setBackend(name))) throw new Error(`tfjs could not initialize the ${name} backend`);
      await tf.ready();
      if (name === 'wasm') installWasmKernels();
    } catch (e) {
      failures.push(`${name} (${firstLine(e)})`);
      continue;
    }
    if (name !== 'wasm') return { name, pkg, threads: used };
    return { name, pkg, threads: wasmThreads(), blas: blas()?.name };
  }
  throw new FtError(
    choice === 'auto'
      ? `no tfjs backend could start: ${failures.join('; ')}`
      : `backend '${choice}' is not available: ${failures.join('; ')}. Install it (npm install ${choice === 'tensorflow' ? '@tensorflow/tfjs-node' : '@tensorflow/tfjs-backend-' + choice}) or pass --backend auto`,
  );
}
