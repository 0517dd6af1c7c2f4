// Tokenizing on worker threads: records go out in chunks and come back in record order, so a pass yields exactly
// what tokenizing in-process yields (the same examples, skips and notes, an error at the same row), on every core.
import type { Worker } from 'node:worker_threads';
import type { TokenizerOrigin } from '../model/tokenizer.ts';
import { FtError } from '../util/errors.ts';
import { TimeBudgetExceeded, withinTime } from '../util/time-budget.ts';
import { startWorker } from '../util/worker.ts';
import { buildExample, type ExampleOptions, type FormatSpec, type RecordFormat } from './example.ts';
import { stallMessage, timeLimitFor } from './time-limit.ts';
import type { BuildResult, DataRecord, DataTokenizer, Example, SkipReason } from './types.ts';

/** What each worker builds once: the tokenizer, the datasets' formats and the example options. */
export interface PoolSetup {
  tokenizer: TokenizerOrigin;
  formats: FormatSpec[];
  options: ExampleOptions;
}

/** Records to tokenize: record i renders with formats[format[i]] and is named where[i] in skips and errors. */
export interface Chunk {
  records: DataRecord[];
  format: number[];
  where: string[];
}

/**
 * A chunk's results, as typed arrays that transfer without copying. Examples lie back to back in ids/labels;
 * length[i] is record i's length, 0 when it made none (skips says why). An error stops the chunk at its record.
 */
export interface ChunkResult {
  ids: Int32Array<ArrayBuffer>;
  labels: Int32Array<ArrayBuffer>;
  length: Int32Array<ArrayBuffer>;
  truncated: Uint8Array<ArrayBuffer>;
  skips: { index: number; reason: SkipReason; detail: string }[];
  error: { index: number; message: string; ft: boolean } | null;
}

/**
 * Worker side: builds a chunk's examples, within `limitMs`: a tokenizer.json regex that backtracks without end, or a
 * chat template that loops, stops the chunk with an error naming the row and which of the two did not finish.
 */
export function buildChunk(
  chunk: Chunk,
  formats: RecordFormat[],
  tok: DataTokenizer,
  options: ExampleOptions,
  limitMs = timeLimitFor(chunk.records),
): ChunkResult {
  const progress = { at: 0 };
  try {
    return withinTime(limitMs, () => buildChunkNow(chunk, formats, tok, options, progress));
  } catch (e) {
    if (!(e instanceof TimeBudgetExceeded)) throw e;
    const i = progress.at;
    const message = stallMessage(chunk.records[i], formats[chunk.format[i]], tok, chunk.where[i], limitMs);
    const none = () => new Int32Array(0);
    return {
      ids: none(),
      labels: none(),
      length: new Int32Array(chunk.records.length),
      truncated: new Uint8Array(chunk.records.length),
      skips: [],
      error: { index: 0, message, ft: true },
    };
  }
}

function buildChunkNow(
  chunk: Chunk,
  formats: RecordFormat[],
  tok: DataTokenizer,
  options: ExampleOptions,
  progress: { at: number },
): ChunkResult {
  const n = chunk.records.length;
  const length = new Int32Array(n);
  const truncated = new Uint8Array(n);
  const examples: Example[] = [];
  const skips: ChunkResult['skips'] = [];
  let error: ChunkResult['error'] = null;
  for (let i = 0; i < n; i++) {
    progress.at = i;
    let res: BuildResult;
    try {
      res = buildExample(chunk.records[i], formats[chunk.format[i]], tok, options, chunk.where[i]);
    } catch (e) {
      error = { index: i, message: (e as Error).message, ft: e instanceof FtError };
      break;
    }
    if (!res.ok) {
      skips.push({ index: i, reason: res.reason, detail: res.detail });
      continue;
    }
    examples.push(res.example);
    length[i] = res.example.ids.length;
    truncated[i] = res.truncated ? 1 : 0;
  }
  const total = examples.reduce((s, e) => s + e.ids.length, 0);
  const ids = new Int32Array(total);
  const labels = new Int32Array(total);
  let at = 0;
  for (const e of examples) {
    ids.set(e.ids, at);
    labels.set(e.labels, at);
    at += e.ids.length;
  }
  return { ids, labels, length, truncated, skips, error };
}

/** Main side: the BuildResult of each of a chunk's `count` records in order; throws where the worker met an error. */
export function* chunkResults(c: ChunkResult, count: number): Generator<BuildResult> {
  let at = 0;
  let s = 0;
  for (let i = 0; i < count; i++) {
    if (c.error?.index === i) throw c.error.ft ? new FtError(c.error.message) : new Error(c.error.message);
    if (c.skips[s]?.index === i) {
      const { reason, detail } = c.skips[s++];
      yield { ok: false, reason, detail };
      continue;
    }
    const end = at + c.length[i];
    yield {
      ok: true,
      example: { ids: c.ids.subarray(at, end), labels: c.labels.subarray(at, end) },
      truncated: c.truncated[i] === 1,
    };
    at = end;
  }
}

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (r: ChunkResult) => void; reject: (e: Error) => void }>;
}

/**
 * Worker threads that each hold a tokenizer; `ready` once one has built it (until then callers tokenize in-process).
 * Idle workers do not keep the process alive; close() ends them.
 */
export class TokenizePool {
  private readonly slots: Slot[];
  private readonly readySlots: Slot[] = [];
  private nextId = 0;
  private failure: Error | null = null;

  constructor(size: number, setup: PoolSetup) {
    this.slots = Array.from({ length: size }, () => {
      const slot: Slot = {
        worker: startWorker(new URL('./tokenize-worker.ts', import.meta.url), setup),
        pending: new Map(),
      };
      slot.worker.on('message', (m: (ChunkResult & { id: number }) | 'ready') => {
        if (m === 'ready') return void this.readySlots.push(slot);
        const p = slot.pending.get(m.id);
        slot.pending.delete(m.id);
        if (slot.pending.size === 0) slot.worker.unref();
        p?.resolve(m);
      });
      slot.worker.on('error', (e) =>
        this.fail(new FtError(`tokenizer worker failed: ${e.message} (dataset_processes: 1 tokenizes in-process)`)),
      );
      slot.worker.on('exit', (code) => this.fail(new FtError(`tokenizer worker exited with code ${code}`)));
      slot.worker.unref();
      return slot;
    });
  }

  get ready(): boolean {
    return this.readySlots.length > 0 || this.failure !== null;
  }

  /** Tokenizes a chunk on the least busy ready worker. */
  run(chunk: Chunk): Promise<ChunkResult> {
    if (this.failure) return Promise.reject(this.failure);
    const slot = this.readySlots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.ref();
      slot.worker.postMessage({ id, ...chunk });
    });
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const slot of this.slots) {
      for (const p of slot.pending.values()) p.reject(e);
      slot.pending.clear();
    }
  }

  async close(): Promise<void> {
    this.fail(new FtError('the tokenizer pool is closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
