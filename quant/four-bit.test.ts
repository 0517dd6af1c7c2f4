// 4-bit tensors (quant/nf4.ts) unpacked in the wasm heap by engine/four-bit.ts equal quant/nf4.ts's own
// dequantization to the bit: NF4 and FP4, with and without double quantization, blocks of 64 and 128, a weight whose
// size is odd and whose last block is partial, on 1 thread and on the pool of 2. Products of a few rows against the
// codes themselves (fourBitProductT) give the bits of the same product against the dequantized weight. While a model
// generates, its codes stay in the heap (withResidentFourBit) without changing a token.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend.ts';
import { fourBitProductCovers, fourBitProductT, unpackedTensor2d, withResidentFourBit } from '../engine/four-bit.ts';
import { generate } from '../model/generate.ts';
import { disposeLlama } from '../model/llama.ts';
import { randomLlama, tinyConfig } from '../test/random-llama.ts';
import { quantizedLinear } from './linear.ts';
import { Rng } from '../util/rng.ts';
import { dequantize, fourBitCodes, quantize } from './nf4.ts';

interface FourBitCase {
  kind: 'nf4' | 'fp4';
  shape: readonly [number, number];
  blockSize: number;
  doubleQuant: boolean;
}

/** A normal random weight of the case's shape, quantized as it says, and its 4-bit codes. */
function randomFourBit(r: Rng, c: FourBitCase) {
  const [rows, cols] = c.shape;
  const w = Float32Array.from({ length: rows * cols }, () => r.normal());
  const q = quantize(w, [rows, cols], { kind: c.kind, blockSize: c.blockSize, doubleQuant: c.doubleQuant });
  const codes = fourBitCodes(q);
  if (!codes) throw new Error('a 4-bit kind has codes');
  return { q, codes };
}

describe('4-bit weights unpacked on wasm', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  const cases = [
    { kind: 'nf4', shape: [513, 301], blockSize: 64, doubleQuant: true }, // 154,413 values: odd, over 2^16
    { kind: 'fp4', shape: [64, 100], blockSize: 128, doubleQuant: false },
    { kind: 'nf4', shape: [3, 7], blockSize: 64, doubleQuant: false }, // one partial block
    // 65,600 double-quantized scales: resolved on the pool on 2 threads, the last nested block partial
    { kind: 'nf4', shape: [1025, 4096], blockSize: 64, doubleQuant: true },
  ] as const;

  it.each([1, 2])('equal dequantize bit for bit on %i thread(s)', async (threads) => {
    await initBackend('wasm', threads);
    const r = new Rng(11);
    for (const c of cases) {
      const { q, codes } = randomFourBit(r, c);
      const t = unpackedTensor2d(codes);
      const got = t.dataSync() as Float32Array;
      t.dispose();
      expect(Buffer.from(got.buffer).equals(Buffer.from(dequantize(q).buffer)), `${c.kind} [${c.shape}]`).toBe(true);
    }
  });

  it.each([1, 2])(
    'multiplied as codes, give the bits of the product against the dequantized weight on %i thread(s)',
    async (threads) => {
      await initBackend('wasm', threads);
      const r = new Rng(12);
      const products = [
        // rows of 300 start mid-block; 260 x 300 values go to the pool on 2 threads
        { kind: 'nf4', shape: [260, 300], blockSize: 64, doubleQuant: true },
        { kind: 'fp4', shape: [37, 256], blockSize: 128, doubleQuant: false },
        { kind: 'nf4', shape: [6, 12], blockSize: 32, doubleQuant: false }, // blocks over several rows
      ] as const;
      for (const c of products) {
        const [n, k] = c.shape;
        const { q, codes } = randomFourBit(r, c);
        const dense = tf.tensor2d(dequantize(q), [n, k]);
        for (let rows = 1; rows <= 5; rows++) {
          expect(fourBitProductCovers(rows, codes)).toBe(true);
          const x = tf.tensor2d(
            Float32Array.from({ length: rows * k }, () => r.normal()),
            [rows, k],
          );
          const [got, want] = [fourBitProductT(x, codes), tf.matMul(x, dense, false, true)];
          const same = Buffer.from(got.dataSync().buffer).equals(Buffer.from(want.dataSync().buffer));
          expect(same, `${c.kind} [${c.shape}], ${rows} row(s)`).toBe(true);
          tf.dispose([x, got, want]);
        }
        dense.dispose();
      }
    },
  );

  it('are multiplied as codes only for up to 5 rows and rows of whole 4-value vectors', () => {
    const codes = (k: number, blockSize: number) => {
      const c = fourBitCodes(quantize(new Float32Array(2 * k), [2, k], { kind: 'nf4', blockSize }));
      if (!c) throw new Error('a 4-bit kind has codes');
      return c;
    };
    expect(fourBitProductCovers(5, codes(8, 64))).toBe(true);
    expect(fourBitProductCovers(6, codes(8, 64))).toBe(false);
    expect(fourBitProductCovers(1, codes(10, 64))).toBe(false);
  });

  it('stay in the heap while generating, giving the tokens of copies made per product, and are freed after', async () => {
    await initBackend('wasm', 1);
    const w = randomLlama(tinyConfig(), 3, quantizedLinear('nf4'));
    const backend = tf.backend();
    const prompts = [
      [1, 5, 9],
      [1, 30, 31, 32],
    ];
    const run = async (budget?: number) => {
      const heapTensors: number[] = [];
      const onToken = (row: number) => row === 0 && heapTensors.push(backend.numDataIds());
      const tokens = await withResidentFourBit(() => generate(w, prompts, { maxNewTokens: 6, onToken }), budget);
      return { tokens, heapTensors };
    };
    const before = backend.numDataIds();
    const [kept, copied] = [await run(), await run(0)];
    expect(backend.numDataIds()).toBe(before);
    expect(kept.tokens).toEqual(copied.tokens);
    // codes, pair table and scales of each of the 2 x 7 projections, from the first step on
    expect(kept.heapTensors.map((n, i) => n - copied.heapTensors[i])).toEqual(kept.heapTensors.map(() => 3 * 14));
    disposeLlama(w);
  });

  it('int8 has no 4-bit codes', () => {
    expect(fourBitCodes(quantize(new Float32Array(64), [1, 64], { kind: 'int8' }))).toBeUndefined();
  });
});
