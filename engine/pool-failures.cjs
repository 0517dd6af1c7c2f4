// What a compute thread of ft's (a wasm pool thread, a kernel worker) does when it throws or exits: it says so on the
// process's pool channel, where engine/wasm-threads.ts's watchdog ends the run with that line. The main thread may be
// blocked waiting for the thread inside a product, where no JS of its own can notice.
'use strict';
const { BroadcastChannel, threadId } = require('node:worker_threads');

/** The channel's name, one per process. */
const poolChannelName = (pid = process.pid) => `ft-wasm-pool-${pid}`;

/** Reports this thread's uncaught throw or its exit on the pool channel, naming it `label` and its thread id. */
function reportFailures(label) {
  const failures = new BroadcastChannel(poolChannelName());
  failures.unref();
  const firstLine = (e) => String(e instanceof Error ? e.message : e).split('\n')[0];
  process.on('uncaughtExceptionMonitor', (e) => failures.postMessage(`${label} ${threadId} failed: ${firstLine(e)}`));
  process.on('exit', (code) => failures.postMessage(`${label} ${threadId} exited (code ${code})`));
}

module.exports = { poolChannelName, reportFailures };
