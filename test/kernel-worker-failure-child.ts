// Child process of engine/wasm-threads.test.ts: a kernel worker thread fails while the main thread waits for it.
// The threaded backend runs a product on its pool, then the real kernel worker script is started with no memory to
// compute in, so it throws; the main thread meanwhile blocks as it would inside a product waiting for a worker that
// will never check in. Only the watchdog can end this process.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../engine/backend.ts';
import { startWorker } from '../util/worker.ts';

const info = await initBackend('wasm', 2);
if (info.threads !== 2) throw new Error(`expected 2 threads, got ${info.threads}`);
tf.matMul(tf.ones([256, 256]), tf.ones([256, 256])).dataSync();
startWorker(new URL('../engine/kernel-worker.ts', import.meta.url), { index: 1, fused: false });
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
