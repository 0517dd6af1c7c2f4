// The pthread worker of tfjs-backend-wasm's threaded build, as a file Node's worker_threads can start.
// tfjs hands emscripten this script as a blob: URL, which worker_threads refuses (tensorflow/tfjs#3830); the package
// ships the same script as a string, run here as a CommonJS script. Its string literals carry newlines that a template
// literal unescaped, so they are escaped again first (as tfjs does before making its blob).
// A pool thread that throws or exits says so on the process's pool channel (engine/wasm-threads.ts): the main thread
// may be blocked waiting for it inside a product, and its watchdog ends the run with that line instead of a hang.
'use strict';
const { reportFailures } = require('./pool-failures.cjs');
const {
  wasmWorkerContents,
} = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js');

reportFailures('wasm pool thread');

new Function('require', '__filename', wasmWorkerContents.replace(/\n/g, '\\n'))(require, __filename);
