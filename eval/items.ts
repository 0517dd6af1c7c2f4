// Held-out eval items: rows -> records (the training column mapping) -> prompt ids exactly as training tokenizes
// them, the reference answer, the row's task (for a per-task breakdown) and its content hash (for the overlap check).
import * as path from 'node:path';
import { buildExample, formatSpec, recordFormat, recordPieces, type RecordFormat } from '../data/example.ts';
import { recordMapper } from '../data/records.ts';
import { entryFiles, readFileRows } from '../data/source.ts';
import { DatasetEntrySchema, type DatasetEntry } from '../data/spec.ts';
import { rowHash } from '../data/split.ts';
import { stallMessage, timeLimitFor } from '../data/time-limit.ts';
import { rowName, type DataRecord, type DataTokenizer, type Example } from '../data/types.ts';
import { IGNORE_INDEX } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { TimeBudgetExceeded, withinTime } from '../util/time-budget.ts';

/** Columns that name a row's task, in the order they are looked for (the Alpaca seed tasks have `name`). */
export const TASK_COLUMNS = ['task', 'name', 'category'] as const;

/** One held-out prompt with its reference. */
export interface EvalItem {
  /** 0-based position among the eval items */
  index: number;
  /** file and record it came from, counted from 1: `eval.jsonl line 3` (JSON, JSONL) or `eval.arrow row 3` */
  where: string;
  /** rowHash of the record (data/split.ts) */
  hash: string;
  /** value of the row's task/name/category column, null when it has none */
  task: string | null;
  /** the rendered prompt text (template applied), as the model sees it */
  prompt: string;
  /** the expected response text */
  reference: string;
  /** prompt token ids, bos included, as buildExample tokenizes them for training */
  promptIds: number[];
  /** the whole example (prompt + response + eos) with training's loss mask, for loss and perplexity */
  example: Example;
}

/** Where eval rows come from: dataset entries (path + type + field mapping, as in a recipe) and an optional row filter. */
export interface EvalSource {
  entries: DatasetEntry[];
  /** relative paths are resolved against this folder */
  baseDir?: string;
  /** keep a record only when this says so (e.g. the recipe's validation split) */
  keep?: (hash: string) => boolean;
  maxSamples?: number;
}

export interface ItemOptions {
  /** the loss example's length limit; longer examples are truncated (the prompt ids never are) */
  sequenceLen: number;
  trainOnInputs?: boolean;
  /** told how many rows were skipped because their prompt alone fills sequenceLen (nothing left to score) */
  log?: (line: string) => void;
  /** time one row may take to tokenize (default: data/time-limit.ts timeLimitFor) */
  timeLimitMs?: number;
}

/** A dataset entry for a plain prompts file: `type` as in a recipe's datasets list, defaults for the rest. */
export function entryFor(file: string, type = 'alpaca'): DatasetEntry {
  const parsed = DatasetEntrySchema.safeParse({ path: file, type });
  if (!parsed.success) throw new FtError(`--data-type ${type}: ${parsed.error.issues[0].message}`);
  return parsed.data;
}

/** Start of the last run of trained labels: the final response begins there, everything before it is the prompt. */
function responseStart(labels: Int32Array): number {
  let i = labels.length - 1;
  while (i >= 0 && labels[i] === IGNORE_INDEX) i--;
  while (i > 0 && labels[i - 1] !== IGNORE_INDEX) i--;
  return i;
}

/** The reference answer of a record: the output column, or a conversation's final assistant message. */
function referenceOf(record: DataRecord, where: string): string {
  if (record.kind === 'instruction') return record.output;
  const last = record.messages[record.messages.length - 1];
  if (last.role !== 'assistant')
    throw new FtError(
      `${where}: the conversation must end with an assistant message (the reference answer), it ends with ${last.role}`,
    );
  return last.content;
}

/** Prompt text, prompt ids and loss example of one record, all through the training code (data/example.ts). */
export function itemOf(record: DataRecord, format: RecordFormat, tok: DataTokenizer, opts: ItemOptions, where: string) {
  const reference = referenceOf(record, where);
  const build = (sequenceLen: number, trainOnInputs: boolean) =>
    buildExample(record, format, tok, { sequenceLen, trainOnInputs, excessLength: 'truncate' }, where);
  // the untruncated, prompt-masked example: its labels mark where the response starts
  const full = build(Number.MAX_SAFE_INTEGER, false);
  if (!full.ok) throw new FtError(`${full.detail} (an eval row needs a response to score)`);
  const scored = build(opts.sequenceLen, opts.trainOnInputs ?? false);
  if (!scored.ok) return null; // the prompt alone fills sequenceLen: the caller counts the skip
  const start = responseStart(full.example.labels);
  const pieces = recordPieces(record, format, where);
  const lastTrained = pieces.map((p) => p.train).lastIndexOf(true);
  const prompt = pieces
    .slice(0, lastTrained)
    .map((p) => p.text)
    .join('');
  return { prompt, reference, promptIds: Array.from(full.example.ids.subarray(0, start)), example: scored.example };
}

/** The task column's value of a row: a non-empty string (numbers are stringified), else null. */
function taskOf(row: Record<string, unknown>): string | null {
  for (const c of TASK_COLUMNS) {
    const v = row[c];
    if (typeof v === 'string' && v !== '') return v;
    if (typeof v === 'number') return String(v);
  }
  return null;
}

/**
 * Reads every eval item of a source. Bad input fails here, before any generation: a missing column names the
 * file and row, an empty file or one with no kept rows is an error.
 */
export async function readEvalItems(source: EvalSource, tok: DataTokenizer, opts: ItemOptions): Promise<EvalItem[]> {
  const baseDir = source.baseDir ?? '.';
  const items: EvalItem[] = [];
  const limit = source.maxSamples ?? Infinity;
  let tooLong = 0;
  for (const entry of source.entries) {
    if (items.length >= limit) break;
    const files = await entryFiles(entry, baseDir);
    const format = recordFormat(formatSpec(entry, tok), tok);
    const mapper = recordMapper(entry);
    let rows = 0;
    for (const file of files) {
      const rel = path.relative(baseDir, file);
      const shown = rel && !rel.startsWith('..') ? rel : file;
      for await (const batch of readFileRows(file, [...mapper.columns, ...TASK_COLUMNS])) {
        for (let i = 0; i < batch.rows.length && items.length < limit; i++) {
          rows++;
          const row = batch.rows[i];
          const where = `${shown} ${rowName(batch, i)}`;
          const task = taskOf(row);
          for (const record of mapper.toRecords(row, where)) {
            const hash = rowHash(record);
            if (source.keep && !source.keep(hash)) continue;
            if (items.length >= limit) break;
            const timeLimit = opts.timeLimitMs ?? timeLimitFor([record]);
            let item: ReturnType<typeof itemOf>;
            try {
              item = withinTime(timeLimit, () => itemOf(record, format, tok, opts, where));
            } catch (e) {
              throw e instanceof TimeBudgetExceeded
                ? new FtError(stallMessage(record, format, tok, where, timeLimit))
                : e;
            }
            if (item === null) tooLong++;
            else items.push({ index: items.length, where, hash, task, ...item });
          }
        }
        if (items.length >= limit) break;
      }
    }
    if (rows === 0)
      throw new FtError(
        `${files.length === 1 ? files[0] : `${entry.path} (${files.length} files)`}: no rows (an eval file needs prompts with references)`,
      );
  }
  const skipped = tooLong
    ? `${tooLong} row${tooLong === 1 ? '' : 's'} skipped: the prompt alone fills sequence_len ${opts.sequenceLen}, leaving no response token to score`
    : '';
  if (items.length === 0) {
    const what = source.entries.map((e) => e.path).join(', ');
    throw new FtError(
      `${what}: no rows left to evaluate${source.keep ? ' (none falls in the validation split)' : ''}${skipped ? ` (${skipped})` : ''}`,
    );
  }
  if (skipped) opts.log?.(`ft: eval: ${skipped}`);
  return items;
}
