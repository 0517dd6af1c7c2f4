// The whole data path for training and eval: files -> records -> split -> shuffle -> examples -> TrainBatch.
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import type { TrainBatch } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { counter } from '../util/progress.ts';
import { Rng } from '../util/rng.ts';
import { toBatches, type BatchOptions } from './batch.ts';
import { formatSpec, recordFormat, type ExampleOptions, type FormatSpec, type RecordFormat } from './example.ts';
import { BadRowError, recordMapper } from './records.ts';
import { shuffleBuffer, shuffled, epochSeed } from './shuffle.ts';
import { entryFiles, readFileRows } from './source.ts';
import type { DataRecipe, DatasetEntry } from './spec.ts';
import { countSplit, fractionSplit, NO_SPLIT, rowHash, type Split } from './split.ts';
import { buildChunk, chunkResults, TokenizePool, type ChunkResult } from './tokenize-pool.ts';
import {
  rowName,
  type BuildResult,
  type DataTokenizer,
  type Example,
  type SkipReason,
  type SourcedRecord,
} from './types.ts';

/** What happened to the rows of one pass; reported so nothing is dropped silently. */
export interface DataStats {
  rows: number;
  badRows: number;
  /** rows of the other part of the split (validation rows while iterating train, and vice versa) */
  otherPart: number;
  examples: number;
  truncated: number;
  skipped: Record<Exclude<SkipReason, 'bad_row'>, number>;
  tokens: number;
  trainableTokens: number;
  /** rows tokenized on worker threads (the others were tokenized in-process) */
  workerRows: number;
  /** the first few skip reasons with the row they came from */
  notes: string[];
}

export function newStats(): DataStats {
  return {
    rows: 0,
    badRows: 0,
    otherPart: 0,
    examples: 0,
    truncated: 0,
    skipped: { too_long: 0, no_trainable_tokens: 0 },
    tokens: 0,
    trainableTokens: 0,
    workerRows: 0,
    notes: [],
  };
}

/** One line: `175 rows -> 170 examples (3 truncated); dropped 2 longer than sequence_len, ...`. */
export function formatStats(s: DataStats, sequenceLen: number): string {
  const parts = [`${s.rows} rows -> ${s.examples} examples, ${s.tokens} tokens (${s.trainableTokens} trained)`];
  if (s.otherPart) parts.push(`${s.otherPart} rows in the other split`);
  if (s.truncated) parts.push(`${s.truncated} truncated to sequence_len ${sequenceLen}`);
  if (s.skipped.too_long) parts.push(`${s.skipped.too_long} dropped as longer than sequence_len ${sequenceLen}`);
  if (s.skipped.no_trainable_tokens) parts.push(`${s.skipped.no_trainable_tokens} dropped with no response tokens`);
  if (s.badRows) parts.push(`${s.badRows} bad rows skipped`);
  if (s.workerRows) parts.push(`${s.workerRows} rows tokenized on worker threads`);
  return parts.join('; ');
}

const MAX_NOTES = 5;
const note = (s: DataStats, text: string) => s.notes.length < MAX_NOTES && s.notes.push(text);

/** Counts a record's BuildResult into a pass's stats (a skip with its note); the example when it made one. */
export function countResult(stats: DataStats, res: BuildResult): Example | null {
  if (!res.ok) {
    stats.skipped[res.reason as Exclude<SkipReason, 'bad_row'>]++;
    note(stats, res.detail);
    return null;
  }
  stats.examples++;
  if (res.truncated) stats.truncated++;
  const { labels } = res.example;
  stats.tokens += labels.length;
  for (let i = 0; i < labels.length; i++) if (labels[i] >= 0) stats.trainableTokens++;
  return res.example;
}

/** How a recipe's examples become micro-batches. */
export function batchOptions(recipe: DataRecipe, tok: Pick<DataTokenizer, 'padId'>): BatchOptions {
  return {
    microBatchSize: recipe.micro_batch_size,
    sequenceLen: recipe.sequence_len,
    samplePacking: recipe.sample_packing,
    padId: tok.padId,
  };
}

/** The error of a pass that yielded no example at all, with what happened to the rows. */
export function noExamplesError(recipe: DataRecipe, part: Part, stats: DataStats): FtError {
  const what = recipe.datasets.map((d) => d.path).join(', ');
  return new FtError(
    `dataset ${what}: no ${part} examples (${formatStats(stats, recipe.sequence_len)})${stats.notes.length ? `; e.g. ${stats.notes[0]}` : ''}`,
  );
}

interface Source {
  index: number;
  entry: DatasetEntry;
  files: string[];
  spec: FormatSpec;
  format: RecordFormat;
}

/** A record with its content hash (the split) and the index of its entry in the recipe's datasets. */
export type DatasetRecord = SourcedRecord & { hash: string; source: number };

/** Rows of a pass tokenized in-process before the worker pool starts (its startup outweighs small datasets). */
const PARALLEL_AFTER = 1024;
/** Records per chunk sent to a worker. */
const CHUNK_ROWS = 256;

export type Part = 'train' | 'validation';

export interface BatchRequest {
  part?: Part;
  /** epoch number: shuffles differ per epoch, reproducibly */
  epoch?: number;
  /** resume: skip this many batches of the epoch, in exactly the order as before (streamed: re-streams and skips; prepared: seeks) */
  startBatch?: number;
  /** filled in as the pass runs */
  stats?: DataStats;
}

/** A recipe's datasets, ready to stream. */
export interface Dataset {
  recipe: DataRecipe;
  files: string[];
  split: Split;
  /** records of a part; train records are shuffled per epoch (shard order + bounded buffer), validation in file order */
  records(part: Part, epoch?: number, stats?: DataStats): AsyncGenerator<DatasetRecord>;
  /** tokenized, masked examples of a part with the row each came from (skips counted in stats) */
  examples(part: Part, epoch?: number, stats?: DataStats): AsyncGenerator<Example & { where: string }>;
  /** TrainBatch micro-batches; throws FtError when a part yields no example at all */
  batches(req?: BatchRequest): AsyncGenerator<TrainBatch>;
  /** micro-batches in epoch 0 of a part (packing depends on the order), its stats filled in; throws as batches() does */
  batchCount(part: Part, stats?: DataStats): Promise<number>;
  /** rowHash of every record of a part (those that made no example too), for the eval's overlap check */
  hashes(part: Part): AsyncGenerator<string>;
  /** ends the tokenizer threads, if a pass started them (idle ones never keep the process alive) */
  close(): Promise<void>;
}

/** A record of either part with its BuildResult, in file order: what data/prepared.ts stores. */
export interface BuiltRecord {
  record: DatasetRecord;
  part: Part;
  result: BuildResult;
}

/** The streaming dataset, which also yields every record of both parts in one pass (to prepare them once). */
export interface StreamingDataset extends Dataset {
  /** both parts in file order, tokenized; rows and bad rows are counted into each of `stats`, worker rows into `workers` */
  builtRecords(stats: DataStats[], workers?: DataStats): AsyncGenerator<BuiltRecord>;
}

export interface LoadOptions {
  /** rows of a pass tokenized in-process before the worker threads take over */
  parallelAfter?: number;
}

/** Resolves every dataset path, checks the formats and prepares the validation split (count splits read the hashes once). */
export async function loadDataset(
  recipe: DataRecipe,
  tok: DataTokenizer,
  baseDir = '.',
  opts: LoadOptions = {},
): Promise<StreamingDataset> {
  const sources: Source[] = [];
  for (const entry of recipe.datasets) {
    const spec = formatSpec(entry, tok);
    sources.push({
      index: sources.length,
      entry,
      files: await entryFiles(entry, baseDir),
      spec,
      format: recordFormat(spec, tok),
    });
  }

  /** Records of the given (source, file) units in that order, mapped and checked; rows counted into each of `stats`. */
  async function* read(units: { src: Source; file: string }[], stats: DataStats[] = []): AsyncGenerator<DatasetRecord> {
    for (const { src, file } of units) {
      const mapper = recordMapper(src.entry);
      const rel = path.relative(baseDir, file);
      const shown = rel && !rel.startsWith('..') ? rel : file;
      for await (const batch of readFileRows(file, mapper.columns, recipe.on_bad_row === 'skip' ? 'mark' : 'error')) {
        for (let i = 0; i < batch.rows.length; i++) {
          const where = `${shown} ${rowName(batch, i)}`;
          for (const s of stats) s.rows++;
          let records;
          try {
            records = mapper.toRecords(batch.rows[i], where);
          } catch (e) {
            if (!(e instanceof BadRowError) || recipe.on_bad_row === 'error') throw e;
            for (const s of stats) {
              s.badRows++;
              note(s, e.message);
            }
            continue;
          }
          for (const record of records) yield { record, where, hash: rowHash(record), source: src.index };
        }
      }
    }
  }
  const allUnits = sources.flatMap((src) => src.files.map((file) => ({ src, file })));

  const v = recipe.val_set_size;
  let split: Split = NO_SPLIT;
  if (v > 0 && v < 1) split = fractionSplit(v, recipe.seed);
  else if (v >= 1) {
    if (!Number.isInteger(v))
      throw new FtError(`val_set_size ${v}: expected a fraction below 1 or a whole number of rows`);
    split = await countSplit(
      (async function* () {
        for await (const r of read(allUnits)) yield r.hash;
      })(),
      v,
      recipe.seed,
    );
  }

  const exampleOpts: ExampleOptions = {
    sequenceLen: recipe.sequence_len,
    trainOnInputs: recipe.train_on_inputs,
    excessLength: recipe.excess_length_strategy,
  };
  const threads = tok.origin ? (recipe.dataset_processes ?? availableParallelism()) : 1;
  const parallelAfter = opts.parallelAfter ?? PARALLEL_AFTER;
  let pool: TokenizePool | null = null;
  const formats = sources.map((s) => s.format);

  /**
   * Each record with its BuildResult, in order. Records go in chunks to the worker threads once they are up
   * (started when a pass passes parallelAfter rows); until then, and with one thread, chunks are built in-process.
   */
  async function* built(
    records: AsyncIterable<DatasetRecord>,
    stats: DataStats,
  ): AsyncGenerator<[DatasetRecord, BuildResult]> {
    const queue: { items: DatasetRecord[]; result: ChunkResult | Promise<ChunkResult> }[] = [];
    let chunk: DatasetRecord[] = [];
    let n = 0;
    const dispatch = () => {
      const items = chunk;
      chunk = [];
      const c = {
        records: items.map((r) => r.record),
        format: items.map((r) => r.source),
        where: items.map((r) => r.where),
      };
      if (threads > 1 && !pool && n >= parallelAfter)
        pool = new TokenizePool(threads, {
          tokenizer: tok.origin!,
          formats: sources.map((s) => s.spec),
          options: exampleOpts,
        });
      if (pool?.ready) {
        const result = pool.run(c);
        result.catch(() => {}); // awaited in order below; a failure must not count as unhandled meanwhile
        queue.push({ items, result });
        stats.workerRows += items.length;
      } else queue.push({ items, result: buildChunk(c, formats, tok, exampleOpts) });
    };
    async function* receive(): AsyncGenerator<[DatasetRecord, BuildResult]> {
      const { items, result } = queue.shift()!;
      let i = 0;
      for (const res of chunkResults(await result, items.length)) yield [items[i++], res];
    }
    for await (const r of records) {
      n++;
      chunk.push(r);
      if (chunk.length === CHUNK_ROWS) {
        dispatch();
        // the workers' "ready" arrives as an event: let the event loop run while they start
        if (pool && !pool.ready) await new Promise(setImmediate);
      }
      // hand on what is done; wait on a worker only with enough chunks in flight to keep every thread busy
      while (queue.length > 0 && (!(queue[0].result instanceof Promise) || queue.length > 2 * threads))
        yield* receive();
    }
    if (chunk.length) dispatch();
    while (queue.length) yield* receive();
  }

  const ds: StreamingDataset = {
    recipe,
    files: allUnits.map((u) => u.file),
    split,
    async *records(part, epoch = 0, stats) {
      const wantVal = part === 'validation';
      const rng = new Rng(epochSeed(recipe.seed, epoch));
      const units = part === 'train' ? shuffled(allUnits, rng) : allUnits;
      const kept = (async function* () {
        for await (const r of read(units, stats && [stats])) {
          if (split.isValidation(r.hash) === wantVal) yield r;
          else if (stats) stats.otherPart++;
        }
      })();
      yield* part === 'train' ? shuffleBuffer(kept, recipe.shuffle_buffer_size, rng) : kept;
    },
    async *examples(part, epoch = 0, stats = newStats()) {
      for await (const [r, res] of built(ds.records(part, epoch, stats), stats)) {
        const example = countResult(stats, res);
        if (example) yield { ...example, where: r.where };
      }
    },
    async *batches({ part = 'train', epoch = 0, startBatch = 0, stats = newStats() } = {}) {
      let i = 0;
      for await (const b of toBatches(ds.examples(part, epoch, stats), batchOptions(recipe, tok))) {
        if (i++ >= startBatch) yield b;
      }
      if (stats.examples === 0) throw noExamplesError(recipe, part, stats);
    },
    async batchCount(part, stats = newStats()) {
      let n = 0;
      const count = counter('data', 'rows');
      try {
        for await (const _ of ds.batches({ part, stats })) {
          n++;
          count.update(stats.rows);
        }
      } finally {
        count.stop();
      }
      return n;
    },
    async *hashes(part) {
      for await (const r of ds.records(part)) yield r.hash;
    },
    async *builtRecords(stats, workers = newStats()) {
      for await (const [record, result] of built(read(allUnits, stats), workers)) {
        yield { record, part: split.isValidation(record.hash) ? 'validation' : 'train', result };
      }
    },
    async close() {
      await pool?.close();
      pool = null;
    },
  };
  return ds;
}
