// What `ft data inspect` and `ft data convert` do, kept out of the CLI so tests can call them.
import { IGNORE_INDEX } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { writeArrowStream } from './arrow.ts';
import { loadDataset, newStats, type DataStats } from './pipeline.ts';
import { describeFile, readFileRows, resolveDataFiles, type FileInfo } from './source.ts';
import type { DataRecipe } from './spec.ts';
import type { DataTokenizer, Example, Row } from './types.ts';

/** Converts JSON / JSONL / Parquet (or Arrow) files, a glob or a folder, into one Arrow IPC stream file, batch by batch. */
export async function convertToArrow(input: string, output: string): Promise<{ files: string[]; rows: number }> {
  const files = await resolveDataFiles(input);
  async function* batches(): AsyncGenerator<Row[]> {
    for (const f of files) for await (const b of readFileRows(f)) yield b.rows;
  }
  return { files, rows: await writeArrowStream(output, batches()) };
}

/** A run of an example's tokens that are all trained or all masked, decoded. */
export interface TokenRun {
  text: string;
  tokens: number;
  trained: boolean;
}

export interface InspectedExample {
  where: string;
  tokens: number;
  trained: number;
  runs: TokenRun[];
}

export interface LengthHistogram {
  /** bucket i counts examples with length in [edges[i], edges[i+1]) tokens (powers of two from 16; bucket 0 is 0-15) */
  edges: number[];
  counts: number[];
  min: number;
  max: number;
  mean: number;
  overSequenceLen: number;
}

export interface Inspection {
  files: FileInfo[];
  examples: InspectedExample[];
  lengths: LengthHistogram;
  stats: DataStats;
}

/** An example split into masked / trained runs of tokens, decoded to text. */
export function tokenRuns(e: Example, tok: Pick<DataTokenizer, 'decode'>): TokenRun[] {
  const runs: TokenRun[] = [];
  let start = 0;
  for (let i = 1; i <= e.ids.length; i++) {
    const trained = e.labels[start] !== IGNORE_INDEX;
    if (i === e.ids.length || (e.labels[i] !== IGNORE_INDEX) !== trained) {
      runs.push({ text: tok.decode([...e.ids.subarray(start, i)]), tokens: i - start, trained });
      start = i;
    }
  }
  return runs;
}

/** Power-of-two buckets from 16 tokens: short tails and long ones both stay readable. */
function bucketOf(n: number): number {
  return n < 16 ? 0 : Math.floor(Math.log2(n)) - 3;
}

/**
 * Schema and row count of each file, the first `show` examples as the model will see them, and the token-length
 * histogram of all of them (lengths before truncation, so over-long rows are visible), streaming.
 */
export async function inspectDataset(
  recipe: DataRecipe,
  tok: DataTokenizer,
  baseDir: string,
  show: number,
): Promise<Inspection> {
  // measure full lengths: no truncation, nothing dropped, file order, no split
  const measuring: DataRecipe = {
    ...recipe,
    sequence_len: Number.MAX_SAFE_INTEGER,
    excess_length_strategy: 'drop',
    shuffle_buffer_size: 0,
    val_set_size: 0,
  };
  const ds = await loadDataset(measuring, tok, baseDir);
  const files: FileInfo[] = [];
  for (const f of ds.files) files.push(await describeFile(f));
  const stats = newStats();
  const examples: InspectedExample[] = [];
  const counts: number[] = [];
  let [min, max, sum, over] = [Infinity, 0, 0, 0];
  try {
    for await (const e of ds.examples('train', 0, stats)) {
      const n = e.ids.length;
      if (examples.length < show)
        examples.push({
          where: e.where,
          tokens: n,
          trained: e.labels.filter((l) => l !== IGNORE_INDEX).length,
          runs: tokenRuns(e, tok),
        });
      const b = bucketOf(n);
      while (counts.length <= b) counts.push(0);
      counts[b]++;
      [min, max, sum] = [Math.min(min, n), Math.max(max, n), sum + n];
      if (n > recipe.sequence_len) over++;
    }
  } finally {
    await ds.close();
  }
  if (stats.examples === 0) throw new FtError(`no examples in ${recipe.datasets.map((d) => d.path).join(', ')}`);
  const edges = counts.map((_, i) => (i === 0 ? 0 : 2 ** (i + 3)));
  return {
    files,
    examples,
    lengths: { edges, counts, min, max, mean: sum / stats.examples, overSequenceLen: over },
    stats,
  };
}
