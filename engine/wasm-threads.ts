// The wasm backend on several threads. tfjs-backend-wasm's pthread build is started in Node for its memory, a
// SharedArrayBuffer that engine/kernel-pool.ts's worker threads compute in; the package itself only ever
// starts the single-threaded build: its init makes emscripten's workers from blob: URLs, which worker_threads refuses
// (tensorflow/tfjs#3830). Here emscripten gets real files instead: the worker script engine/wasm-pthread-worker.cjs
// and the module's glue from the package's wasm-out/ folder.
//
// Around the build:
// - XNNPACK's own pool is kept to the calling thread. Products, the bulk of the work, run on ft's kernel pool; with
//   both pools at two threads they took turns spinning on the same two cores, and a stories15M step took 3.2 s
//   against 2.6 s with XNNPACK on one.
// - pthreads keep Node's event loop alive; the build's workers are unref'd, so a command ends when its work does.
// - a compute thread that dies leaves the main thread waiting for it forever inside a product, where no JS of its own
//   runs. Threads report a throw or an exit on a BroadcastChannel (engine/pool-failures.cjs); a watchdog thread
//   writes that line and ends the process (SIGKILL: the main thread cannot run a handler). Checkpoints are written by
//   rename, so the last one stays.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { BackendWasm, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { stopKernelWorkers } from './kernel-pool.ts';

const require = createRequire(import.meta.url);
const WASM_OUT = path.dirname(
  require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js'),
);
const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wasm-pthread-worker.cjs');

/** Most threads the wasm backend is started with. */
export const MAX_WASM_THREADS = 64;

interface PThreadWorker {
  unref(): void;
  terminate(): void;
}
/** The emscripten module of the threaded build, as far as ft and BackendWasm use it. */
interface ThreadedModule {
  cwrap(name: string, ret: string | null, args: string[]): (...args: number[]) => number;
  PThread: { runningWorkers: PThreadWorker[]; unusedWorkers: PThreadWorker[]; terminateAllThreads(): void };
  tfjs?: Record<string, unknown>;
}
type Factory = (config: Record<string, unknown>) => Promise<ThreadedModule>;

interface Imports {
  env: Record<string, unknown>;
}

/** The threaded build, with XNNPACK's pool at one thread (the caller's). */
async function startThreadedModule(): Promise<ThreadedModule> {
  const factory = require(path.join(WASM_OUT, 'tfjs-backend-wasm-threaded-simd.js')) as Factory;
  const wasmFile = path.join(WASM_OUT, 'tfjs-backend-wasm-threaded-simd.wasm');
  let fail!: (e: unknown) => void;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  // emscripten makes this object its Module: PThread is on it by the time the wasm is compiled
  const config: Record<string, unknown> & Partial<ThreadedModule> = {
    locateFile: (file: string) => (file.endsWith('.worker.js') ? WORKER : path.join(WASM_OUT, file)),
    mainScriptUrlOrBlob: path.join(WASM_OUT, 'tfjs-backend-wasm-threaded-simd.js'),
    instantiateWasm(imports: Imports, receive: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void) {
      WebAssembly.instantiate(readFileSync(wasmFile), imports as unknown as WebAssembly.Imports).then(
        ({ instance, module }) => {
          // the build makes 8 workers ahead; one is kept (with none, emscripten waits forever for workers to load)
          for (const worker of config.PThread!.unusedWorkers.splice(1)) worker.terminate();
          receive(instance, module);
        },
        fail,
      );
      return {};
    },
  };
  const module = await Promise.race([factory(config), failed]);
  // the same bridge tfjs-backend-wasm's own init puts on the module
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  return module;
}

/** tfjs-backend-wasm's own registration (the single-threaded SIMD build), kept to go back to for one thread. */
const stockFactory = tf.findBackendFactory('wasm');
const WASM_PRIORITY = 2; // tfjs-backend-wasm's
let registered = 1;
let running: ThreadedModule | undefined;
let watchdog: Worker | undefined;

/** The channel compute threads report failures on, one per process (engine/pool-failures.cjs). */
const { poolChannelName } = require('./pool-failures.cjs') as { poolChannelName: () => string };

/** A thread that ends the process with the first failure a pool thread reports (started once, never holds it open). */
function startWatchdog(): void {
  if (watchdog) return;
  const source = `
    const { BroadcastChannel } = require('node:worker_threads');
    const { writeSync } = require('node:fs');
    new BroadcastChannel(${JSON.stringify(poolChannelName())}).onmessage = ({ data }) => {
      writeSync(2, 'ft: ' + data + '; the run is stopped (the last checkpoint is kept)\\n');
      process.kill(process.pid, 'SIGKILL');
    };`;
  watchdog = new Worker(source, { eval: true });
  watchdog.unref();
}

/** Threads the registered wasm backend computes products on. */
export function wasmThreads(): number {
  return registered;
}

/**
 * Registers the 'wasm' backend with `threads` threads: tfjs-backend-wasm's own single-threaded build for 1, else the
 * threaded build, whose products run on that many threads (the calling thread is one of them). tf.setBackend('wasm')
 * then starts it; a backend already started with another count is removed first.
 */
export function registerWasm(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WASM_THREADS)
    throw new Error(`wasm takes 1 to ${MAX_WASM_THREADS} threads, got ${threads}`);
  if (threads === registered) return;
  tf.removeBackend('wasm');
  running?.PThread.terminateAllThreads();
  stopKernelWorkers();
  running = undefined;
  registered = threads;
  if (threads === 1) {
    tf.registerBackend('wasm', stockFactory, WASM_PRIORITY);
    return;
  }
  tf.registerBackend(
    'wasm',
    async () => {
      startWatchdog();
      const module = await startThreadedModule();
      setThreadsCount(1);
      const backend = new BackendWasm(module as never);
      for (const worker of module.PThread.runningWorkers) worker.unref();
      running = module;
      return backend;
    },
    WASM_PRIORITY,
  );
}
