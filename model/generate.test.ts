import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { randomLlama, rowsBatch, tinyConfig } from '../test/random-llama.ts';
import { Rng } from '../util/rng.ts';
import { generate, leftPaddedBatch, sampleToken } from './generate.ts';
import { KVCache } from './kv-cache.ts';
import { disposeLlama, forward } from './llama.ts';

const w = randomLlama(tinyConfig({ numHiddenLayers: 2 }), 11);
afterAll(() => disposeLlama(w));

/** Greedy decoding the slow way: the whole sequence through the model again for every new token. */
function greedyWithoutCache(prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const logits = forward(w, rowsBatch([seq]), undefined, { logits: 'last' });
    seq.push(tf.tidy(() => tf.argMax(logits.reshape([-1])).dataSync()[0]));
    logits.dispose();
  }
  return seq.slice(prompt.length);
}

describe('KVCache', () => {
  it('prefill + one-token steps give the same logits as one pass over the whole sequence', () => {
    const seq = [1, 7, 3, 9, 22, 5];
    const full = forward(w, rowsBatch([seq]));
    const cache = new KVCache(1, w.layers.length);
    const pre = forward(w, rowsBatch([seq.slice(0, 4)]), cache);
    const steps = [4, 5].map((t) =>
      forward(
        w,
        { B: 1, T: 1, ids: Int32Array.of(seq[t]), segments: Int32Array.of(1), positions: Int32Array.of(t) },
        cache,
      ),
    );
    const incremental = tf.concat([pre, ...steps], 1);
    expect(cache.length).toBe(6);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(full, incremental))).dataSync()[0])).toBeLessThan(1e-4);
    cache.dispose();
    tf.dispose([full, pre, ...steps, incremental]);
  });
});

describe('generate', () => {
  const prompts = [
    [1, 5, 9],
    [1, 30, 31, 32, 33, 34, 35],
    [1, 12],
  ];

  it('greedy generation with the KV cache equals recomputing the full sequence', async () => {
    for (const p of prompts) {
      const [got] = await generate(w, [p], { maxNewTokens: 10 });
      expect(got).toEqual(greedyWithoutCache(p, 10));
    }
  });

  it('batched generation of prompts of different lengths equals one-by-one generation', async () => {
    const batched = await generate(w, prompts, { maxNewTokens: 8 });
    const single = [];
    for (const p of prompts) single.push((await generate(w, [p], { maxNewTokens: 8 }))[0]);
    expect(batched).toEqual(single);
  });

  it('a fixed seed gives the same sampled tokens, another seed different ones', async () => {
    const opts = { maxNewTokens: 12, temperature: 1.5, topK: 0, topP: 1 };
    const a = await generate(w, prompts, { ...opts, seed: 42 });
    const b = await generate(w, prompts, { ...opts, seed: 42 });
    const c = await generate(w, prompts, { ...opts, seed: 43 });
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it('top-k = 1 sampling equals greedy', async () => {
    const greedy = await generate(w, prompts, { maxNewTokens: 8 });
    const topK1 = await generate(w, prompts, { maxNewTokens: 8, temperature: 2, topK: 1, seed: 5 });
    expect(topK1).toEqual(greedy);
  });

  it('stops a row at an eos token (not returned) while the others continue, and streams every token', async () => {
    const greedy = await generate(w, prompts, { maxNewTokens: 8 });
    const eos = greedy[0][3];
    const streamed: number[][] = prompts.map(() => []);
    const got = await generate(w, prompts, {
      maxNewTokens: 8,
      eosIds: [eos],
      onToken: (row, id) => streamed[row].push(id),
    });
    expect(got[0]).toEqual(greedy[0].slice(0, greedy[0].indexOf(eos)));
    expect(streamed).toEqual(got);
    for (const [b, row] of got.entries()) expect(row).toEqual(greedy[b].slice(0, row.length));
  });

  it('leaves no tensors behind', async () => {
    const before = tf.memory().numTensors;
    await generate(w, prompts, { maxNewTokens: 4, temperature: 0.8, topP: 0.9, seed: 1 });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects an empty prompt', async () => {
    await expect(generate(w, [[1], []], { maxNewTokens: 2 })).rejects.toThrow(/prompt 1 is empty/);
  });
});

describe('leftPaddedBatch', () => {
  it('pads on the left with segment 0 and counts positions from the first real token', () => {
    const b = leftPaddedBatch([[4, 5, 6], [7]]);
    expect([b.B, b.T]).toEqual([2, 3]);
    expect(Array.from(b.ids)).toEqual([4, 5, 6, 0, 0, 7]);
    expect(Array.from(b.segments)).toEqual([1, 1, 1, 0, 0, 1]);
    expect(Array.from(b.positions)).toEqual([0, 1, 2, 0, 0, 0]);
  });
});

describe('sampleToken', () => {
  const logits = Float32Array.from([0.5, 3, 2.9, -1, 1]);
  const draw = (opts: { temperature: number; topK: number; topP: number }, n = 2000) => {
    const rng = new Rng(9);
    const counts = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sampleToken(logits, opts, rng)]++;
    return counts.map((c) => c / n);
  };

  it('temperature 0 is argmax', () => {
    expect(sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, new Rng(1))).toBe(1);
  });

  it('follows softmax(logits / temperature) when unrestricted', () => {
    const freq = draw({ temperature: 1, topK: 0, topP: 1 }, 20000);
    const z = Array.from(logits).reduce((a, x) => a + Math.exp(x), 0);
    logits.forEach((x, i) => expect(Math.abs(freq[i] - Math.exp(x) / z)).toBeLessThan(0.015));
  });

  it('top-k keeps only the k most likely tokens', () => {
    const freq = draw({ temperature: 5, topK: 2, topP: 1 });
    expect(freq[0] + freq[3] + freq[4]).toBe(0);
    expect(freq[1]).toBeGreaterThan(0.4);
    expect(freq[2]).toBeGreaterThan(0.4);
  });

  it('top-p keeps the smallest set of most likely tokens reaching p', () => {
    // probabilities ~ [0.04, 0.49, 0.44, 0.01, 0.02]: p = 0.6 needs tokens 1 and 2, p = 0.3 only token 1
    const two = draw({ temperature: 1, topK: 0, topP: 0.6 });
    expect(two[0] + two[3] + two[4]).toBe(0);
    expect(two[2]).toBeGreaterThan(0.3);
    expect(draw({ temperature: 1, topK: 0, topP: 0.3 })[1]).toBe(1);
  });
});
