// A tokenize-pool.ts worker: builds the tokenizer and formats once, then answers chunks with their examples.
import { parentPort } from 'node:worker_threads';
import { tokenizerFromJson } from '../model/tokenizer.ts';
import { workerInput } from '../util/worker.ts';
import { recordFormat } from './example.ts';
import { buildChunk, type Chunk, type PoolSetup } from './tokenize-pool.ts';

const setup = workerInput<PoolSetup>();
const { tokenizerJson, tokenizerConfig, modelConfig, source } = setup.tokenizer;
const tok = tokenizerFromJson(tokenizerJson, tokenizerConfig, modelConfig, source);
const formats = setup.formats.map((f) => recordFormat(f, tok));

parentPort!.postMessage('ready');
parentPort!.on('message', ({ id, ...chunk }: Chunk & { id: number }) => {
  const r = buildChunk(chunk, formats, tok, setup.options);
  parentPort!.postMessage({ id, ...r }, [r.ids.buffer, r.labels.buffer, r.length.buffer, r.truncated.buffer]);
});
