// Train/validation split by a hash of each row's content: stable across runs, independent of file order and streaming.
import type { DataRecord } from './types.ts';

/** cyrb53: a fast 53-bit string hash (two 32-bit multiply-xor lanes); hand-written, no hash library is a dependency. */
export function hash53(s: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * A seed-independent id of a record's content (14 hex digits): identical rows get the same hash, so eval
 * can detect overlap between its rows and the training rows.
 */
export function rowHash(r: DataRecord): string {
  const text =
    r.kind === 'instruction'
      ? `i\0${r.instruction}\0${r.input}\0${r.output}`
      : `c\0${r.messages.map((m) => `${m.role}\x01${m.content}`).join('\0')}`;
  return hash53(text).toString(16).padStart(14, '0');
}

const KEY_SPACE = 2 ** 53;

/** Where a row falls in the seeded order the split uses: uniform in [0, 2^53). */
export function splitKey(hash: string, seed: number): number {
  return hash53(hash, seed);
}

/** Decides train vs validation per row; the same seed and data give the same split in every run. */
export interface Split {
  isValidation(hash: string): boolean;
}

/** No held-out rows. */
export const NO_SPLIT: Split = { isValidation: () => false };

/** A fraction f in (0, 1): each row independently with probability f (by its hash, not by chance). */
export function fractionSplit(fraction: number, seed: number): Split {
  const cut = fraction * KEY_SPACE;
  return { isValidation: (h) => splitKey(h, seed) < cut };
}

/**
 * Exactly `count` rows (more only when duplicate rows tie at the cut, and then all copies go to validation so
 * they cannot leak): the rows with the `count` smallest keys. Needs one pass over the hashes, keeping `count` keys.
 */
export async function countSplit(hashes: AsyncIterable<string>, count: number, seed: number): Promise<Split> {
  const heap: number[] = []; // max-heap of the smallest keys seen
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && heap[l] > heap[m]) m = l;
      if (r < heap.length && heap[r] > heap[m]) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m], heap[i]];
      i = m;
    }
  };
  for await (const h of hashes) {
    const k = splitKey(h, seed);
    if (heap.length < count) {
      heap.push(k);
      for (let i = heap.length - 1; i > 0 && heap[(i - 1) >> 1] < heap[i]; i = (i - 1) >> 1)
        [heap[i], heap[(i - 1) >> 1]] = [heap[(i - 1) >> 1], heap[i]];
    } else if (k < heap[0]) {
      heap[0] = k;
      down(0);
    }
  }
  const cut = heap.length ? heap[0] : -1;
  return { isValidation: (h) => splitKey(h, seed) <= cut };
}
