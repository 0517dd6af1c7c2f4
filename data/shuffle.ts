// Streaming shuffle with a bounded buffer (as tf.data / datasets IterableDataset.shuffle), seeded and reproducible.
import { Rng } from '../util/rng.ts';

/** The seed of one epoch's shuffle: a different order every epoch, the same order every run. */
export function epochSeed(seed: number, epoch: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(epoch + 1, 0x85ebca6b)) >>> 0;
}

/**
 * Items in a shuffled order holding at most `bufferSize` at once: each arriving item replaces a random buffered one,
 * which is emitted. bufferSize <= 1 keeps the input order. Same input + same rng state = same output.
 */
export async function* shuffleBuffer<T>(items: AsyncIterable<T>, bufferSize: number, rng: Rng): AsyncGenerator<T> {
  if (bufferSize <= 1) {
    yield* items;
    return;
  }
  const buf: T[] = [];
  for await (const item of items) {
    if (buf.length < bufferSize) {
      buf.push(item);
      continue;
    }
    const j = rng.int(bufferSize);
    const out = buf[j];
    buf[j] = item;
    yield out;
  }
  // drain: Fisher-Yates over what is left
  for (let i = buf.length - 1; i >= 0; i--) {
    const j = rng.int(i + 1);
    yield buf[j];
    buf[j] = buf[i];
  }
}

/** A seeded permutation of a small list (shard order per epoch). */
export function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** A seeded permutation of 0..n-1 (Fisher-Yates), 4 bytes per item: a prepared dataset's order of an epoch. */
export function permutation(n: number, rng: Rng): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
