// Child process of engine/wasm-threads.test.ts: a wasm pool thread fails while the main thread waits for it.
// The threaded backend runs a product, then the real pool-thread script is started as emscripten starts one and told
// to load a module that is not there, so it throws; the main thread meanwhile blocks as it would inside a product
// waiting for a thread that will never answer. Only the watchdog can end this process.
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend.ts';

const info = await initBackend('wasm', 2);
if (info.threads !== 2) throw new Error(`expected 2 threads, got ${info.threads}`);
tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync();
const thread = new Worker(new URL('../engine/wasm-pthread-worker.cjs', import.meta.url));
thread.postMessage({
  cmd: 'load',
  handlers: [],
  urlOrBlob: '/nonexistent/tfjs-backend-wasm-threaded-simd.js',
  wasmMemory: new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }),
});
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
