// Boot of a TypeScript worker thread (see worker.ts): register tsx as cli/ft.js does, then run the entry.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
