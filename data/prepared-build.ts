// Builds a prepared dataset folder from one streaming pass over both parts (tokenized on the worker threads),
// writing each part's flat arrays as the examples arrive: memory stays flat in the dataset's size.
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { counter } from '../util/progress.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { countResult, newStats, type DataStats, type Part, type StreamingDataset } from './pipeline.ts';
import {
  encodeToken,
  FORMAT,
  HEADER,
  PARTS,
  partFile,
  type PartHeader,
  type PreparedHeader,
} from './prepared-format.ts';
import type { FileStamp, PreparedKey } from './prepared-key.ts';
import type { Example } from './types.ts';

const FLUSH_BYTES = 1 << 20;

/** Appends bytes to a file through a 1 MiB buffer. */
class Appender {
  private readonly out: WriteStream;
  private buf = new Uint8Array(FLUSH_BYTES);
  private used = 0;

  constructor(file: string) {
    this.out = createWriteStream(file);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.used + bytes.length > this.buf.length) await this.flush();
    if (bytes.length > this.buf.length) return this.send(bytes.slice());
    this.buf.set(bytes, this.used);
    this.used += bytes.length;
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const full = this.buf.subarray(0, this.used);
    this.buf = new Uint8Array(FLUSH_BYTES); // the stream keeps `full` until written
    this.used = 0;
    await this.send(full);
  }

  private async send(bytes: Uint8Array): Promise<void> {
    if (!this.out.write(bytes)) await once(this.out, 'drain');
  }

  async close(): Promise<void> {
    await this.flush();
    this.out.end();
    await once(this.out, 'finish');
  }

  destroy(): void {
    this.out.destroy();
  }
}

const bytesOf = (a: Int32Array | Uint32Array | Float64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** One part's files being written. */
class PartWriter {
  readonly header: Omit<PartHeader, 'stats'> = { records: 0, examples: 0, tokens: 0, whereBytes: 0 };
  private readonly files: Record<'tokens' | 'index' | 'where' | 'hashes', Appender>;

  constructor(dir: string, part: Part) {
    this.files = {
      tokens: new Appender(partFile(dir, part, 'tokens')),
      index: new Appender(partFile(dir, part, 'index')),
      where: new Appender(partFile(dir, part, 'where')),
      hashes: new Appender(partFile(dir, part, 'hashes')),
    };
  }

  async record(hash: string): Promise<void> {
    this.header.records++;
    await this.files.hashes.write(bytesOf(Float64Array.of(parseInt(hash, 16))));
  }

  async example(e: Example, where: string): Promise<void> {
    const tokens = new Int32Array(e.ids.length);
    for (let i = 0; i < tokens.length; i++) {
      const label = e.labels[i];
      if (label >= 0 && label !== e.ids[i])
        throw new Error(`${where}: label ${label} at ${i} is neither the token ${e.ids[i]} nor masked`);
      tokens[i] = encodeToken(e.ids[i], label);
    }
    const name = Buffer.from(where, 'utf8');
    await this.files.tokens.write(bytesOf(tokens));
    await this.files.index.write(bytesOf(Uint32Array.of(tokens.length, name.length)));
    await this.files.where.write(name);
    this.header.examples++;
    this.header.tokens += tokens.length;
    this.header.whereBytes += name.length;
  }

  async close(): Promise<void> {
    for (const f of Object.values(this.files)) await f.close();
  }

  destroy(): void {
    for (const f of Object.values(this.files)) f.destroy();
  }
}

/**
 * Tokenizes both parts in one pass into `dir` (an empty temp folder: the caller renames it into place) and writes
 * header.json last; returns it with the rows tokenized on worker threads. The stats of each part equal what a streaming pass over that part counts; an error (a bad row
 * under on_bad_row: error, an over-long example under excess_length_strategy: error) stops the build at its row.
 */
export async function buildPrepared(
  ds: StreamingDataset,
  dir: string,
  key: PreparedKey,
  files: FileStamp[],
): Promise<{ header: PreparedHeader; workerRows: number }> {
  const stats: Record<Part, DataStats> = { train: newStats(), validation: newStats() };
  const workers = newStats();
  const writers = { train: new PartWriter(dir, 'train'), validation: new PartWriter(dir, 'validation') };
  const count = counter('prepare data', 'rows');
  try {
    for await (const { record, part, result } of ds.builtRecords([stats.train, stats.validation], workers)) {
      stats[part === 'train' ? 'validation' : 'train'].otherPart++;
      await writers[part].record(record.hash);
      const example = countResult(stats[part], result);
      if (example) await writers[part].example(example, record.where);
      count.update(stats.train.rows);
    }
    for (const p of PARTS) await writers[p].close();
  } catch (e) {
    for (const p of PARTS) writers[p].destroy();
    throw e;
  } finally {
    count.stop();
  }
  const parts = Object.fromEntries(PARTS.map((p) => [p, { ...writers[p].header, stats: stats[p] }])) as Record<
    Part,
    PartHeader
  >;
  const header: PreparedHeader = { format: FORMAT, key, files, parts };
  await writeFileAtomic(`${dir}/${HEADER}`, JSON.stringify(header));
  return { header, workerRows: workers.workerRows };
}
