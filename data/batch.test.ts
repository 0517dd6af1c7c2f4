import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX } from '../model/types.ts';
import { collate, toBatches } from './batch.ts';
import type { Example } from './types.ts';

const X = IGNORE_INDEX;
const ex = (ids: number[], labels: number[]): Example => ({
  ids: Int32Array.from(ids),
  labels: Int32Array.from(labels),
});
async function* from<T>(xs: T[]): AsyncGenerator<T> {
  yield* xs;
}
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('collate', () => {
  it('pads each row to the longest, shifts labels within each example and marks padding as segment 0', () => {
    const b = collate([[ex([1, 10, 11, 2], [X, X, 11, 2])], [ex([1, 20, 2], [X, 20, 2])]], 0);
    expect([b.B, b.T]).toEqual([2, 4]);
    expect([...b.ids]).toEqual([1, 10, 11, 2, 1, 20, 2, 0]);
    expect([...b.segments]).toEqual([1, 1, 1, 1, 1, 1, 1, 0]);
    expect([...b.positions]).toEqual([0, 1, 2, 3, 0, 1, 2, 0]);
    // labels[t] = target of the logits at t = the next token when it is trained
    expect([...b.labels]).toEqual([X, 11, 2, X, 20, 2, X, X]);
  });

  it('packs examples as separate segments whose labels never point into the next example', () => {
    const b = collate([[ex([1, 10, 2], [X, 10, 2]), ex([1, 20, 21, 2], [X, X, 21, 2])]], 0);
    expect([...b.segments]).toEqual([1, 1, 1, 2, 2, 2, 2]);
    expect([...b.positions]).toEqual([0, 1, 2, 0, 1, 2, 3]);
    expect([...b.labels]).toEqual([10, 2, X, X, 21, 2, X]);
  });
});

describe('toBatches', () => {
  const examples = Array.from({ length: 23 }, (_, i) =>
    ex(
      Array.from({ length: 3 + (i % 7) }, (_, t) => 100 * i + t),
      Array.from({ length: 3 + (i % 7) }, (_, t) => (t < 2 ? X : 100 * i + t)),
    ),
  );

  it('without packing: one example per row, micro-batches of microBatchSize, a smaller last batch', async () => {
    const bs = await all(
      toBatches(from(examples), { microBatchSize: 4, sequenceLen: 16, samplePacking: false, padId: 0 }),
    );
    expect(bs.map((b) => b.B)).toEqual([4, 4, 4, 4, 4, 3]);
    for (const b of bs) for (const s of b.segments) expect(s === 0 || s === 1).toBe(true);
  });

  it('with packing: rows stay within sequence_len, every example appears once and whole, segments never span two examples', async () => {
    const bs = await all(
      toBatches(from(examples), { microBatchSize: 2, sequenceLen: 16, samplePacking: true, padId: 0 }),
    );
    const seen: number[][] = [];
    for (const b of bs) {
      expect(b.T).toBeLessThanOrEqual(16);
      for (let r = 0; r < b.B; r++) {
        let cur: number[] = [];
        let seg = 0;
        for (let t = 0; t < b.T; t++) {
          const s = b.segments[r * b.T + t];
          if (s !== seg) {
            if (cur.length) seen.push(cur);
            expect(s === 0 || s === seg + 1).toBe(true);
            cur = [];
            seg = s;
          }
          if (s > 0) {
            expect(b.positions[r * b.T + t]).toBe(cur.length);
            cur.push(b.ids[r * b.T + t]);
          }
        }
        if (cur.length) seen.push(cur);
      }
    }
    // each segment is exactly one example (ids 100*i + t): no segment mixes two examples
    expect(seen.map((s) => Math.floor(s[0] / 100)).sort((a, b) => a - b)).toEqual(examples.map((_, i) => i));
    for (const s of seen) expect(s).toEqual([...examples[Math.floor(s[0] / 100)].ids]);
    expect(bs.length).toBeLessThan(Math.ceil(examples.length / 2)); // packing did fit several per row
  });
});
