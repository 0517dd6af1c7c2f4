// 4-bit tensors (quant/nf4.ts) unpacked in the wasm heap by engine/four-bit.ts equal quant/nf4.ts's own
// dequantization to the bit: NF4 and FP4, with and without double quantization, blocks of 64 and 128, a weight whose
// size is odd and whose last block is partial, on 1 thread and on the pool of 2.
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../engine/backend.ts';
import { unpackedTensor2d } from '../engine/four-bit.ts';
import { Rng } from '../util/rng.ts';
import { dequantize, fourBitCodes, quantize } from './nf4.ts';

describe('4-bit weights unpacked on wasm', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  const cases = [
    { kind: 'nf4', shape: [513, 301], blockSize: 64, doubleQuant: true }, // 154,413 values: odd, over 2^16
    { kind: 'fp4', shape: [64, 100], blockSize: 128, doubleQuant: false },
    { kind: 'nf4', shape: [3, 7], blockSize: 64, doubleQuant: false }, // one partial block
  ] as const;

  it.each([1, 2])('equal dequantize bit for bit on %i thread(s)', async (threads) => {
    await initBackend('wasm', threads);
    const r = new Rng(11);
    for (const c of cases) {
      const [rows, cols] = c.shape;
      const w = Float32Array.from({ length: rows * cols }, () => r.normal());
      const q = quantize(w, [rows, cols], { kind: c.kind, blockSize: c.blockSize, doubleQuant: c.doubleQuant });
      const codes = fourBitCodes(q);
      if (!codes) throw new Error('a 4-bit kind has codes');
      const t = unpackedTensor2d(codes);
      const got = t.dataSync() as Float32Array;
      t.dispose();
      expect(Buffer.from(got.buffer).equals(Buffer.from(dequantize(q).buffer)), `${c.kind} [${c.shape}]`).toBe(true);
    }
  });

  it('int8 has no 4-bit codes', () => {
    expect(fourBitCodes(quantize(new Float32Array(64), [1, 64], { kind: 'int8' }))).toBeUndefined();
  });
});
