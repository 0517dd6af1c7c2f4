// Examples -> TrainBatch rows: one example per row padded to the batch's longest, or several packed per row.
import { IGNORE_INDEX, type TrainBatch } from '../model/types.ts';
import type { Example } from './types.ts';

export interface BatchOptions {
  microBatchSize: number;
  sequenceLen: number;
  /** pack several examples per row (each its own segment: attention never crosses examples, positions restart) */
  samplePacking: boolean;
  /** id written at padding positions (masked everywhere, so any valid id) */
  padId: number;
}

/** Open rows that packing fills first-fit before emitting the oldest: better fill than one row at a time, still streaming. */
const OPEN_ROWS = 8;

/**
 * Rows of items (examples, or a prepared dataset's example indices: packing needs only lengths): one each, or
 * packed first-fit into rows of at most sequenceLen tokens.
 */
export async function* packRows<T>(
  items: AsyncIterable<T>,
  lengthOf: (item: T) => number,
  opts: BatchOptions,
): AsyncGenerator<T[]> {
  if (!opts.samplePacking) {
    for await (const item of items) yield [item];
    return;
  }
  const open: { items: T[]; len: number }[] = [];
  for await (const item of items) {
    const n = lengthOf(item);
    let row = open.find((r) => r.len + n <= opts.sequenceLen);
    if (!row) {
      if (open.length === OPEN_ROWS) yield open.shift()!.items;
      row = { items: [], len: 0 };
      open.push(row);
    }
    row.items.push(item);
    row.len += n;
  }
  for (const r of open) yield r.items;
}

/** The rows of each micro-batch: `microBatchSize` rows, the last group may hold fewer. */
export async function* microBatchRows<T>(
  items: AsyncIterable<T>,
  lengthOf: (item: T) => number,
  opts: BatchOptions,
): AsyncGenerator<T[][]> {
  let rows: T[][] = [];
  for await (const row of packRows(items, lengthOf, opts)) {
    rows.push(row);
    if (rows.length === opts.microBatchSize) {
      yield rows;
      rows = [];
    }
  }
  if (rows.length) yield rows;
}

/**
 * A TrainBatch from rows of examples. T = the longest row. Each example is a segment 1..k of its row with
 * positions from 0; labels are shifted: labels[t] = the example's label at t+1 (-100 at its last token and on padding).
 */
export function collate(rows: Example[][], padId: number): TrainBatch {
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.reduce((s, e) => s + e.ids.length, 0)));
  const ids = new Int32Array(B * T).fill(padId);
  const segments = new Int32Array(B * T);
  const positions = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  rows.forEach((row, b) => {
    let o = b * T;
    row.forEach((ex, k) => {
      const L = ex.ids.length;
      ids.set(ex.ids, o);
      segments.fill(k + 1, o, o + L);
      for (let t = 0; t < L; t++) positions[o + t] = t;
      labels.set(ex.labels.subarray(1), o); // the last token of each example keeps -100
      o += L;
    });
  });
  return { B, T, ids, segments, positions, labels };
}

/** Micro-batches of `microBatchSize` rows; the last one may hold fewer rows. */
export async function* toBatches(examples: AsyncIterable<Example>, opts: BatchOptions): AsyncGenerator<TrainBatch> {
  for await (const rows of microBatchRows(examples, (e) => e.ids.length, opts)) yield collate(rows, opts.padId);
}
