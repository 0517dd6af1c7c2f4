// The key/value cache of autoregressive decoding: every layer's keys and values for B rows, grown as tokens are appended.
import * as tf from '@tensorflow/tfjs';
import { FtError } from '../util/errors.ts';
import type { TokenBatch } from './types.ts';

/**
 * Keys and values of every layer for B rows, [B, kvHeads, length, headDim] each, growing as tokens are
 * appended; `segments` [B, length] remembers which example each cached token belongs to (0 = padding).
 */
export class KVCache {
  length = 0;
  private segments = new Int32Array(0);
  private readonly keys: (tf.Tensor4D | null)[];
  private readonly values: (tf.Tensor4D | null)[];

  constructor(
    readonly B: number,
    numLayers: number,
  ) {
    this.keys = new Array(numLayers).fill(null);
    this.values = new Array(numLayers).fill(null);
  }

  /** Extends the cached segments by the batch's T tokens per row; returns the segments of all keys, [B, length]. */
  appendSegments(batch: TokenBatch): Int32Array {
    if (batch.B !== this.B) throw new FtError(`KV cache holds ${this.B} rows, the batch has ${batch.B}`);
    const { B, T } = batch;
    const past = this.length;
    const S = past + T;
    const next = new Int32Array(B * S);
    for (let b = 0; b < B; b++) {
      next.set(this.segments.subarray(b * past, (b + 1) * past), b * S);
      next.set(batch.segments.subarray(b * T, (b + 1) * T), b * S + past);
    }
    this.segments = next;
    this.length = S;
    return next;
  }

  /** Appends one layer's new k, v [B, kvHeads, T, d] and returns the whole cached k, v [B, kvHeads, S, d]. */
  append(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    const grow = (store: (tf.Tensor4D | null)[], x: tf.Tensor4D): tf.Tensor4D => {
      const old = store[layer];
      const all = tf.keep(old ? tf.concat([old, x], 2) : x);
      old?.dispose();
      store[layer] = all;
      return all;
    };
    return [grow(this.keys, k), grow(this.values, v)];
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys.fill(null);
    this.values.fill(null);
    this.segments = new Int32Array(0);
    this.length = 0;
  }
}
