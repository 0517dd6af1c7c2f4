// How long tokenizing records may take, and what to say when it did not finish: a tokenizer.json regex that
// backtracks without end, or a chat template that loops (util/time-budget.ts stops the work).
import * as path from 'node:path';
import { TimeBudgetExceeded, withinTime } from '../util/time-budget.ts';
import { recordPieces, type RecordFormat } from './example.ts';
import type { DataRecord, DataTokenizer } from './types.ts';

/** A minute, and 50 µs per character of the records' text (the library's BPE runs ~4 µs per character). */
export function timeLimitFor(records: DataRecord[]): number {
  let chars = 0;
  for (const r of records)
    chars +=
      r.kind === 'instruction'
        ? r.instruction.length + r.input.length + r.output.length
        : r.messages.reduce((s, m) => s + m.content.length, 0);
  return 60_000 + chars * 0.05;
}

/**
 * The one line for `record` (at `where`) not built within `limitMs`: a chat record whose template alone does not
 * render within the limit names the template, anything else the tokenizer's tokenizer.json.
 */
export function stallMessage(
  record: DataRecord,
  format: RecordFormat,
  tok: DataTokenizer,
  where: string,
  limitMs: number,
): string {
  const seconds = `${+(limitMs / 1000).toFixed(1)} s`;
  if (format.kind === 'chat') {
    try {
      withinTime(limitMs, () => recordPieces(record, format, where));
    } catch (e) {
      if (!(e instanceof TimeBudgetExceeded)) throw e;
      return `${where}: ${format.templateFrom ?? 'the chat template'} did not finish rendering in ${seconds}`;
    }
  }
  return `${where}: tokenizing did not finish in ${seconds}: a regex of ${tok.origin ? path.join(tok.origin.source, 'tokenizer.json') : 'the tokenizer'} backtracks without end on this text`;
}
