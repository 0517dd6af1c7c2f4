// The whole data path for training and eval: files -> records -> split -> shuffle -> examples -> TrainBatch.
import * as path from 'node:path';
import type { TrainBatch } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { toBatches } from './batch.ts';
import { chatRenderer } from './chat.ts';
import { buildExample, type ExampleOptions, type RecordFormat } from './example.ts';
import { BadRowError, recordMapper } from './records.ts';
import { shuffleBuffer, shuffled, epochSeed } from './shuffle.ts';
import { resolveDataFiles, readFileRows } from './source.ts';
import type { DataRecipe, DatasetEntry } from './spec.ts';
import { countSplit, fractionSplit, NO_SPLIT, rowHash, type Split } from './split.ts';
import { customTemplate, TEMPLATES } from './templates.ts';
import type { DataTokenizer, Example, SkipReason, SourcedRecord } from './types.ts';

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
  /** the first few skip reasons with the row they came from */
  notes: string[];
}

export function newStats(): DataStats {
  return { rows: 0, badRows: 0, otherPart: 0, examples: 0, truncated: 0, skipped: { too_long: 0, no_trainable_tokens: 0 }, tokens: 0, trainableTokens: 0, notes: [] };
}

/** One line: `175 rows -> 170 examples (3 truncated); dropped 2 longer than sequence_len, ...`. */
export function formatStats(s: DataStats, sequenceLen: number): string {
  const parts = [`${s.rows} rows -> ${s.examples} examples, ${s.tokens} tokens (${s.trainableTokens} trained)`];
  if (s.otherPart) parts.push(`${s.otherPart} rows in the other split`);
  if (s.truncated) parts.push(`${s.truncated} truncated to sequence_len ${sequenceLen}`);
  if (s.skipped.too_long) parts.push(`${s.skipped.too_long} dropped as longer than sequence_len ${sequenceLen}`);
  if (s.skipped.no_trainable_tokens) parts.push(`${s.skipped.no_trainable_tokens} dropped with no response tokens`);
  if (s.badRows) parts.push(`${s.badRows} bad rows skipped`);
  return parts.join('; ');
}

const MAX_NOTES = 5;
const note = (s: DataStats, text: string) => s.notes.length < MAX_NOTES && s.notes.push(text);

interface Source {
  entry: DatasetEntry;
  files: string[];
  format: RecordFormat;
}

export type Part = 'train' | 'validation';

export interface BatchRequest {
  part?: Part;
  /** epoch number: shuffles differ per epoch, reproducibly */
  epoch?: number;
  /** resume: skip this many batches of the epoch (re-streams and skips, so the order is exactly as before) */
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
  records(part: Part, epoch?: number, stats?: DataStats): AsyncGenerator<SourcedRecord & { hash: string; format: RecordFormat }>;
  /** tokenized, masked examples of a part with the row each came from (skips counted in stats) */
  examples(part: Part, epoch?: number, stats?: DataStats): AsyncGenerator<Example & { where: string }>;
  /** TrainBatch micro-batches; throws FtError when a part yields no example at all */
  batches(req?: BatchRequest): AsyncGenerator<TrainBatch>;
}

function formatOf(entry: DatasetEntry, tok: DataTokenizer): RecordFormat {
  if (entry.type === 'chat') {
    const source = entry.chat_template ?? tok.chatTemplate;
    if (!source) throw new FtError(`dataset '${entry.path}': type chat needs a chat template; the tokenizer has none (set chat_template in the dataset entry)`);
    return { kind: 'chat', renderer: chatRenderer(source, tok), rolesToTrain: entry.roles_to_train };
  }
  if (entry.type === 'custom') return { kind: 'instruction', template: customTemplate(entry.format!, entry.no_input_format) };
  return { kind: 'instruction', template: TEMPLATES[entry.type] };
}

/** Resolves every dataset path, checks the formats and prepares the validation split (count splits read the hashes once). */
export async function loadDataset(recipe: DataRecipe, tok: DataTokenizer, baseDir = '.'): Promise<Dataset> {
  const sources: Source[] = [];
  for (const entry of recipe.datasets) sources.push({ entry, files: await resolveDataFiles(entry.path, baseDir), format: formatOf(entry, tok) });

  /** Records of the given (source, file) units in that order, mapped and checked. */
  async function* read(units: { src: Source; file: string }[], stats?: DataStats): AsyncGenerator<SourcedRecord & { hash: string; format: RecordFormat }> {
    for (const { src, file } of units) {
      const mapper = recordMapper(src.entry);
      const rel = path.relative(baseDir, file);
      const shown = rel && !rel.startsWith('..') ? rel : file;
      for await (const batch of readFileRows(file, mapper.columns)) {
        for (let i = 0; i < batch.rows.length; i++) {
          const where = `${shown} row ${batch.offset + i}`;
          if (stats) stats.rows++;
          let records;
          try {
            records = mapper.toRecords(batch.rows[i], where);
          } catch (e) {
            if (!(e instanceof BadRowError) || recipe.on_bad_row === 'error') throw e;
            if (stats) {
              stats.badRows++;
              note(stats, e.message);
            }
            continue;
          }
          for (const record of records) yield { record, where, hash: rowHash(record), format: src.format };
        }
      }
    }
  }
  const allUnits = sources.flatMap((src) => src.files.map((file) => ({ src, file })));

  const v = recipe.val_set_size;
  let split: Split = NO_SPLIT;
  if (v > 0 && v < 1) split = fractionSplit(v, recipe.seed);
  else if (v >= 1) {
    if (!Number.isInteger(v)) throw new FtError(`val_set_size ${v}: expected a fraction below 1 or a whole number of rows`);
    split = await countSplit((async function* () {
      for await (const r of read(allUnits)) yield r.hash;
    })(), v, recipe.seed);
  }

  const exampleOpts: ExampleOptions = { sequenceLen: recipe.sequence_len, trainOnInputs: recipe.train_on_inputs, excessLength: recipe.excess_length_strategy };

  const ds: Dataset = {
    recipe,
    files: allUnits.map((u) => u.file),
    split,
    async *records(part, epoch = 0, stats) {
      const wantVal = part === 'validation';
      const rng = new Rng(epochSeed(recipe.seed, epoch));
      const units = part === 'train' ? shuffled(allUnits, rng) : allUnits;
      const kept = (async function* () {
        for await (const r of read(units, stats)) {
          if (split.isValidation(r.hash) === wantVal) yield r;
          else if (stats) stats.otherPart++;
        }
      })();
      yield* part === 'train' ? shuffleBuffer(kept, recipe.shuffle_buffer_size, rng) : kept;
    },
    async *examples(part, epoch = 0, stats = newStats()) {
      for await (const r of ds.records(part, epoch, stats)) {
        const res = buildExample(r.record, r.format, tok, exampleOpts, r.where);
        if (!res.ok) {
          stats.skipped[res.reason as Exclude<SkipReason, 'bad_row'>]++;
          note(stats, res.detail);
          continue;
        }
        stats.examples++;
        if (res.truncated) stats.truncated++;
        stats.tokens += res.example.ids.length;
        for (const l of res.example.labels) if (l >= 0) stats.trainableTokens++;
        yield { ...res.example, where: r.where };
      }
    },
    async *batches({ part = 'train', epoch = 0, startBatch = 0, stats = newStats() } = {}) {
      const opts = { microBatchSize: recipe.micro_batch_size, sequenceLen: recipe.sequence_len, samplePacking: recipe.sample_packing, padId: tok.padId };
      let i = 0;
      for await (const b of toBatches(ds.examples(part, epoch, stats), opts)) {
        if (i++ >= startBatch) yield b;
      }
      if (stats.examples === 0) {
        const what = recipe.datasets.map((d) => d.path).join(', ');
        throw new FtError(`dataset ${what}: no ${part} examples (${formatStats(stats, recipe.sequence_len)})${stats.notes.length ? `; e.g. ${stats.notes[0]}` : ''}`);
      }
    },
  };
  return ds;
}
