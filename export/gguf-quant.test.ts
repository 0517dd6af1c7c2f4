import { promises as fsp } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeGguf, ggufBytes, type GgufModelType } from './gguf-quant.ts';

// quant_*.bin were written by llama.cpp's gguf-py (gguf/quants.py) from quant_input.f32 (test/fixtures/gguf/make_quant_golden.py)
const fixture = (f: string) => fsp.readFile(new URL(`../test/fixtures/gguf/${f}`, import.meta.url));

describe('GGUF tensor encodings against gguf-py', () => {
  for (const type of ['q8_0', 'q4_0', 'bf16', 'f16'] as GgufModelType[]) {
    it(`${type}: every byte equals gguf-py's quantize (zeros, ties, subnormal scales, signed maxima included)`, async () => {
      const raw = await fixture('quant_input.f32');
      const x = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
      const want = await fixture(`quant_${type}.bin`);
      const got = encodeGguf(x, type);
      expect(got.length).toBe(ggufBytes(type, x.length));
      expect(got.length).toBe(want.length);
      const firstDiff = got.findIndex((b, i) => b !== want[i]);
      expect(firstDiff).toBe(-1);
    });
  }
});
