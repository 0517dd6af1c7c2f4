// Worker threads running TypeScript. A worker starts without its parent's module hooks (tsx's included), so a
// small JavaScript boot registers tsx and then imports the .ts entry; the entry reads its input as workerInput().
import { Worker, workerData } from 'node:worker_threads';

const BOOT = new URL('./ts-worker.mjs', import.meta.url);

/** Starts `entry` (a .ts module URL) on a worker thread with `input` (structured-cloned). */
export function startWorker(entry: URL, input: unknown): Worker {
  return new Worker(BOOT, { workerData: { entry: entry.href, input }, execArgv: [] });
}

/** Inside a worker started by startWorker: the input it was given. */
export function workerInput<T>(): T {
  return (workerData as { input: T }).input;
}
