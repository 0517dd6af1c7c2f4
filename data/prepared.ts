// Data prepared once (as axolotl's dataset_prepared_path): tokenized, masked, split and hashed into a folder per
// (data files, tokenizer, data keys), then read by offset for counting, every epoch, validation, resume and the eval.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { collate, microBatchRows } from './batch.ts';
import {
  batchOptions,
  loadDataset,
  newStats,
  noExamplesError,
  type Dataset,
  type DataStats,
  type LoadOptions,
  type Part,
} from './pipeline.ts';
import { buildPrepared } from './prepared-build.ts';
import {
  expectedSize,
  FORMAT,
  HEADER,
  PARTS,
  partFile,
  tokenId,
  type PartFile,
  type PartHeader,
  type PreparedHeader,
} from './prepared-format.ts';
import { fileStamps, filesChanged, keyName, preparedKey, tokenizerHash, type PreparedKey } from './prepared-key.ts';
import { epochSeed, permutation } from './shuffle.ts';
import type { DataRecipe } from './spec.ts';
import { fractionSplit, NO_SPLIT, type Split } from './split.ts';
import type { DataTokenizer, Example } from './types.ts';
import { IGNORE_INDEX } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { writeDirAtomic } from '../util/fs.ts';
import { Rng } from '../util/rng.ts';

/** Where a recipe's prepared datasets live: dataset_prepared_path, else `last_run_prepared` in output_dir. */
export function preparedPathOf(recipe: { dataset_prepared_path?: string; output_dir: string }): string {
  return recipe.dataset_prepared_path ?? path.join(recipe.output_dir, 'last_run_prepared');
}

export interface PrepareOptions extends LoadOptions {
  /** the dataset_prepared_path folder: each key gets a subfolder named by its hash */
  dir: string;
  /** false: use prepared data only when it is up to date, else stream (the eval: a pass is cheaper than a build) */
  build?: boolean;
  log?: (line: string) => void;
}

/**
 * The recipe's dataset, prepared: an up-to-date prepared folder is reused, otherwise it is built (one tokenizing
 * pass) and then read. A tokenizer that cannot say what it was built from gets the streaming dataset.
 */
export async function prepareDataset(
  recipe: DataRecipe,
  tok: DataTokenizer,
  baseDir: string,
  opts: PrepareOptions,
): Promise<Dataset> {
  const log = opts.log ?? (() => {});
  const tokenizer = tokenizerHash(tok);
  if (tokenizer === null) return loadDataset(recipe, tok, baseDir, opts);
  const key = preparedKey(recipe, tokenizer, baseDir);
  const target = path.join(opts.dir, keyName(key));
  const files = await fileStamps(recipe, baseDir);
  const stale = await staleReason(target, key, files);
  if (typeof stale !== 'string') {
    log(
      `ft: data: reusing ${target} (${stale.parts.train.examples} train + ${stale.parts.validation.examples} validation examples; files, tokenizer and data keys unchanged)`,
    );
    return preparedDataset(target, stale, recipe, tok, baseDir);
  }
  if (opts.build === false) {
    log(`ft: data: streaming, no up-to-date prepared data in ${target} (${stale})`);
    return loadDataset(recipe, tok, baseDir, opts);
  }
  log(`ft: data: preparing ${target} (${stale})`);
  const started = performance.now();
  const streaming = await loadDataset(recipe, tok, baseDir, opts);
  let built: Awaited<ReturnType<typeof buildPrepared>> | undefined;
  try {
    await writeDirAtomic(
      target,
      async (tmp) => {
        built = await buildPrepared(streaming, tmp, key, files);
      },
      { kind: 'prepared-data', overwrite: true },
    ); // the folder is named by its key's hash: a stale one of the same key is ft's
  } finally {
    await streaming.close();
  }
  const { header, workerRows } = built!;
  const onWorkers = workerRows ? `, ${workerRows} rows tokenized on worker threads` : '';
  log(
    `ft: data: prepared ${header.parts.train.examples} train + ${header.parts.validation.examples} validation examples in ${((performance.now() - started) / 1000).toFixed(1)} s${onWorkers}`,
  );
  return preparedDataset(target, header, recipe, tok, baseDir);
}

/** The folder's header when it is complete and matches the key and the files, else why not. */
async function staleReason(
  dir: string,
  key: PreparedKey,
  files: PreparedHeader['files'],
): Promise<PreparedHeader | string> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, HEADER), 'utf8');
  } catch {
    return (await fsp.stat(dir).catch(() => null)) ? `incomplete: no ${HEADER}` : 'no prepared data yet';
  }
  let h: PreparedHeader;
  try {
    h = JSON.parse(text) as PreparedHeader;
  } catch {
    return `unreadable ${HEADER}`;
  }
  if (h.format !== FORMAT || JSON.stringify(h.key) !== JSON.stringify(key))
    return 'prepared by another version or from other data keys';
  const changed = filesChanged(h.files, files);
  if (changed) return changed;
  for (const part of PARTS) {
    for (const file of ['tokens', 'index', 'where', 'hashes'] as PartFile[]) {
      const f = partFile(dir, part, file);
      const size = (await fsp.stat(f).catch(() => null))?.size;
      if (size !== expectedSize(h.parts[part], file))
        return `incomplete: ${path.basename(f)} is ${size ?? 'missing'}${size === undefined ? '' : ' bytes'}, expected ${expectedSize(h.parts[part], file)} bytes`;
    }
  }
  return h;
}

/** One part's examples, read by offset: the index (16 bytes per example) in memory, the tokens on disk. */
class PartReader {
  // opened on first use; kept as promises so that concurrent reads share one handle
  private tokens: Promise<fsp.FileHandle> | null = null;
  private names: Promise<fsp.FileHandle> | null = null;

  private constructor(
    private readonly dir: string,
    private readonly part: Part,
    readonly header: PartHeader,
    private readonly starts: Float64Array, // [examples + 1] token offsets
    private readonly whereStarts: Float64Array, // [examples + 1] byte offsets
  ) {}

  static async open(dir: string, part: Part, header: PartHeader): Promise<PartReader> {
    const n = header.examples;
    const index = new Uint32Array(2 * n);
    await readAt(await fsp.open(partFile(dir, part, 'index')), new Uint8Array(index.buffer), 0, true);
    const starts = new Float64Array(n + 1);
    const whereStarts = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) {
      starts[i + 1] = starts[i] + index[2 * i];
      whereStarts[i + 1] = whereStarts[i] + index[2 * i + 1];
    }
    return new PartReader(dir, part, header, starts, whereStarts);
  }

  length(i: number): number {
    return this.starts[i + 1] - this.starts[i];
  }

  async example(i: number): Promise<Example> {
    this.tokens ??= fsp.open(partFile(this.dir, this.part, 'tokens'));
    const stored = new Int32Array(this.length(i));
    await readAt(await this.tokens, new Uint8Array(stored.buffer), 4 * this.starts[i]);
    const ids = new Int32Array(stored.length);
    const labels = new Int32Array(stored.length);
    for (let t = 0; t < stored.length; t++) {
      ids[t] = tokenId(stored[t]);
      labels[t] = stored[t] < 0 ? IGNORE_INDEX : stored[t];
    }
    return { ids, labels };
  }

  async where(i: number): Promise<string> {
    this.names ??= fsp.open(partFile(this.dir, this.part, 'where'));
    const bytes = new Uint8Array(this.whereStarts[i + 1] - this.whereStarts[i]);
    await readAt(await this.names, bytes, this.whereStarts[i]);
    return Buffer.from(bytes.buffer, 0, bytes.length).toString('utf8');
  }

  async close(): Promise<void> {
    await (await this.tokens)?.close();
    await (await this.names)?.close();
    this.tokens = this.names = null;
  }
}

/** Fills `bytes` from `position`; a short read means the file changed under us. */
async function readAt(fh: fsp.FileHandle, bytes: Uint8Array, position: number, closeAfter = false): Promise<void> {
  try {
    let done = 0;
    while (done < bytes.length) {
      const { bytesRead } = await fh.read(bytes, done, bytes.length - done, position + done);
      if (bytesRead === 0)
        throw new FtError(
          `prepared data: a file ended early (it changed while in use; delete the folder to rebuild it)`,
        );
      done += bytesRead;
    }
  } finally {
    if (closeAfter) await fh.close();
  }
}

/** rowHash strings of a part's records, streamed from its hashes file. */
async function* storedHashes(dir: string, part: Part): AsyncGenerator<string> {
  const fh = await fsp.open(partFile(dir, part, 'hashes'));
  try {
    const chunk = new Float64Array(65536);
    let position = 0;
    for (;;) {
      const { bytesRead } = await fh.read(new Uint8Array(chunk.buffer), 0, chunk.byteLength, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      for (let i = 0; i < bytesRead / 8; i++) yield chunk[i].toString(16).padStart(14, '0');
    }
  } finally {
    await fh.close();
  }
}

/** The split the folder was prepared with: a fraction by formula, a count by the held-out rows' hashes. */
async function preparedSplit(dir: string, recipe: DataRecipe): Promise<Split> {
  const v = recipe.val_set_size;
  if (v > 0 && v < 1) return fractionSplit(v, recipe.seed);
  if (v === 0) return NO_SPLIT;
  const held = new Set<string>();
  for await (const h of storedHashes(dir, 'validation')) held.add(h);
  return { isValidation: (h) => held.has(h) };
}

const copyStats = (into: DataStats, from: DataStats) => Object.assign(into, structuredClone(from));

/** A Dataset over a prepared folder; `records()` (row contents are not stored) streams the files. */
async function preparedDataset(
  dir: string,
  header: PreparedHeader,
  recipe: DataRecipe,
  tok: DataTokenizer,
  baseDir: string,
): Promise<Dataset> {
  const readers = new Map<Part, PartReader>();
  const reader = async (part: Part) => {
    if (!readers.has(part)) readers.set(part, await PartReader.open(dir, part, header.parts[part]));
    return readers.get(part)!;
  };
  let streaming: Dataset | null = null;
  /** Example indices of a part in an epoch's order: train shuffled per epoch (unless shuffle_buffer_size keeps file order). */
  async function* order(part: Part, epoch: number): AsyncGenerator<number> {
    const n = header.parts[part].examples;
    const shuffle = part === 'train' && recipe.shuffle_buffer_size > 1;
    const perm = shuffle ? permutation(n, new Rng(epochSeed(recipe.seed, epoch))) : null;
    for (let i = 0; i < n; i++) yield perm ? perm[i] : i;
  }
  /** Each micro-batch's rows of example indices, after checking the part has examples (stats filled in). */
  async function* plan(part: Part, epoch: number, stats: DataStats): AsyncGenerator<number[][]> {
    copyStats(stats, header.parts[part].stats);
    if (stats.examples === 0) throw noExamplesError(recipe, part, stats);
    const r = await reader(part);
    yield* microBatchRows(order(part, epoch), (i) => r.length(i), batchOptions(recipe, tok));
  }
  const ds: Dataset = {
    recipe,
    files: header.files.map((f) => f.file),
    split: await preparedSplit(dir, recipe),
    async *records(part, epoch, stats) {
      streaming ??= await loadDataset(recipe, tok, baseDir);
      yield* streaming.records(part, epoch, stats);
    },
    async *examples(part, epoch = 0, stats = newStats()) {
      copyStats(stats, header.parts[part].stats);
      const r = await reader(part);
      for await (const i of order(part, epoch)) yield { ...(await r.example(i)), where: await r.where(i) };
    },
    async *batches({ part = 'train', epoch = 0, startBatch = 0, stats = newStats() } = {}) {
      const r = await reader(part);
      let k = 0;
      for await (const rows of plan(part, epoch, stats)) {
        if (k++ < startBatch) continue; // resume: only lengths are looked at until the batch to resume at
        yield collate(await Promise.all(rows.map((row) => Promise.all(row.map((i) => r.example(i))))), tok.padId);
      }
    },
    async batchCount(part, stats = newStats()) {
      let n = 0;
      for await (const _ of plan(part, 0, stats)) n++;
      return n;
    },
    hashes: (part) => storedHashes(dir, part),
    async close() {
      for (const r of readers.values()) await r.close();
      readers.clear();
      await streaming?.close();
    },
  };
  return ds;
}
