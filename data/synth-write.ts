// The synth tasks on disk as Hugging Face `datasets` lays out `DatasetDict.save_to_disk`: dataset_dict.json and one
// folder per split with data-00000-of-00001.arrow (an Arrow IPC stream), dataset_info.json and state.json.
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeDirAtomic } from '../util/fs.ts';
import { writeArrowStream } from './arrow.ts';
import type { Row } from './types.ts';
import { synthSplits, type SynthOptions, type SynthRow } from './synth.ts';

const SHARD = 'data-00000-of-00001.arrow';
/** Rows per Arrow record batch (datasets' default writer_batch_size). */
const BATCH_ROWS = 1000;
const COLUMNS: (keyof SynthRow)[] = ['task', 'instruction', 'input', 'output'];

async function* batchesOf(rows: SynthRow[]): AsyncGenerator<Row[]> {
  for (let i = 0; i < rows.length; i += BATCH_ROWS) yield rows.slice(i, i + BATCH_ROWS).map((r) => ({ ...r }));
}

/** One split's folder: the Arrow stream plus the two JSON files `datasets.load_from_disk` reads. */
async function writeSplit(dir: string, split: string, rows: SynthRow[]): Promise<void> {
  await fsp.mkdir(dir);
  await writeArrowStream(path.join(dir, SHARD), batchesOf(rows));
  const features = Object.fromEntries(COLUMNS.map((c) => [c, { dtype: 'string', _type: 'Value' }]));
  const info = {
    citation: '',
    description: 'ft data synth: generated instruction tasks',
    features,
    homepage: '',
    license: '',
  };
  const fingerprint = createHash('sha256').update(JSON.stringify(rows)).digest('hex').slice(0, 16);
  const state = {
    _data_files: [{ filename: SHARD }],
    _fingerprint: fingerprint,
    _format_columns: null,
    _format_kwargs: {},
    _format_type: null,
    _output_all_columns: false,
    _split: split,
  };
  await fsp.writeFile(path.join(dir, 'dataset_info.json'), JSON.stringify(info, null, 2) + '\n');
  await fsp.writeFile(path.join(dir, 'state.json'), JSON.stringify(state, null, 2) + '\n');
}

/** Writes the `train` and `test` (held-out) splits to `out` atomically; returns the row counts. */
export async function writeSynthDataset(out: string, opts: SynthOptions): Promise<{ train: number; test: number }> {
  const splits = synthSplits(opts);
  await writeDirAtomic(
    out,
    async (dir) => {
      await fsp.writeFile(path.join(dir, 'dataset_dict.json'), JSON.stringify({ splits: ['train', 'test'] }) + '\n');
      await writeSplit(path.join(dir, 'train'), 'train', splits.train);
      await writeSplit(path.join(dir, 'test'), 'test', splits.test);
    },
    { kind: 'dataset' },
  );
  return { train: splits.train.length, test: splits.test.length };
}

/** A recipe's dataset entry; one with `synth` is generated at its `path` on first use. */
export interface SynthEntry {
  path: string;
  synth?: { rows: number; held_out: number; seed: number };
}

/** Creates each entry's synth dataset when its folder is absent (as base_model_init creates the base model). */
export async function createSynthDatasets(entries: SynthEntry[], log: (line: string) => void): Promise<void> {
  for (const e of entries) {
    if (!e.synth || existsSync(e.path)) continue;
    const { rows, held_out: heldOut, seed } = e.synth;
    log(`ft: creating dataset ${e.path} (ft data synth: ${rows} rows + ${heldOut} held out, seed ${seed})`);
    await writeSynthDataset(e.path, { rows, heldOut, seed });
  }
}
