import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FtError } from '../util/errors.ts';
import { SafetensorsFile, encodeFloats, writeSafetensors, type FloatDtype } from './safetensors.ts';

const FIX = path.join(import.meta.dirname, '../test/fixtures/safetensors');
const expected = JSON.parse(await fsp.readFile(path.join(FIX, 'expected.json'), 'utf8'));
const fromBits = (bits: number[]) => new Float32Array(Int32Array.from(bits).buffer);
const bitsOf = (f: Float32Array) => Array.from(new Int32Array(f.buffer, f.byteOffset, f.length));

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-st-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function readAll(file: string, name: string) {
  const f = await SafetensorsFile.open(file);
  try {
    return await f.read(name);
  } finally {
    await f.close();
  }
}

describe('reading files from an independent writer (torch + struct)', () => {
  it.each([
    ['f32.safetensors', 'input_f32_bits'],
    ['f16.safetensors', 'f16_as_f32_bits'],
    ['bf16.safetensors', 'bf16_as_f32_bits'],
  ])('%s decodes to the expected float32 bits', async (file, key) => {
    const t = await readAll(path.join(FIX, file), 'w');
    expect(t.shape).toEqual(expected.shape);
    expect(bitsOf(t.data)).toEqual(expected[key]);
  });

  it('reads every tensor of a multi-tensor file with mixed dtypes, a scalar and an empty tensor', async () => {
    const f = await SafetensorsFile.open(path.join(FIX, 'multi.safetensors'));
    try {
      expect(f.metadata).toEqual({ format: 'pt', source: 'make_fixtures.py' });
      expect(f.names().sort()).toEqual(Object.keys(expected.multi).sort());
      for (const [name, want] of Object.entries<{ dtype: string; shape: number[]; f32_bits: number[] }>(
        expected.multi,
      )) {
        expect(f.info(name).dtype).toBe(want.dtype);
        const t = await f.read(name);
        expect(t.shape).toEqual(want.shape);
        expect(bitsOf(t.data)).toEqual(want.f32_bits);
      }
      const raw = await f.readRaw('model.norm.weight');
      expect(raw.dtype).toBe('F16');
      expect(Array.from(new Uint16Array(raw.bytes.slice().buffer))).toEqual([0x3c00, 0x3c00, 0x3c00, 0x3c00]);
    } finally {
      await f.close();
    }
  });
});

describe('writing', () => {
  it.each<[FloatDtype, string]>([
    ['F16', 'f16.safetensors'],
    ['BF16', 'bf16.safetensors'],
    ['F32', 'f32.safetensors'],
  ])(
    'rounds float32 to %s exactly as torch does (round to nearest even, overflow, subnormals, NaN)',
    async (dtype, file) => {
      const theirs = await SafetensorsFile.open(path.join(FIX, file));
      const raw = await theirs.readRaw('w');
      await theirs.close();
      const ours = Buffer.from(encodeFloats(fromBits(expected.input_f32_bits), dtype));
      const want = Buffer.from(raw.bytes);
      // NaN payloads differ between implementations (torch 1.13 gives bf16 0xffff, ft the canonical quiet 0x7fc0): compare them as NaN
      const nan = {
        F32: () => false,
        F16: (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0,
        BF16: (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0,
      }[dtype];
      const width = dtype === 'F32' ? 4 : 2;
      for (let i = 0; i < want.length / width; i++) {
        const [a, b] =
          width === 4
            ? [ours.readUInt32LE(4 * i), want.readUInt32LE(4 * i)]
            : [ours.readUInt16LE(2 * i), want.readUInt16LE(2 * i)];
        if (nan(b)) expect(nan(a)).toBe(true);
        else expect(a, `element ${i}`).toBe(b);
      }
      expect(ours.length).toBe(want.length);
    },
  );

  it.each<FloatDtype>(['F32', 'F16', 'BF16'])(
    'round trips %s values bit-exactly, with aligned data and default metadata',
    async (dtype) => {
      // values already representable in the dtype, so write -> read must return the same bits
      const src = fromBits(
        expected[{ F32: 'input_f32_bits', F16: 'f16_as_f32_bits', BF16: 'bf16_as_f32_bits' }[dtype]],
      );
      const file = path.join(tmp, `rt-${dtype}.safetensors`);
      await writeSafetensors(file, [
        { name: 'a', dtype, shape: [8, 12], data: src },
        { name: 'b', dtype, shape: [3], data: () => Promise.resolve(Float32Array.of(-0, 0, Infinity)) },
      ]);
      const bytes = await fsp.readFile(file);
      const n = Number(bytes.readBigUInt64LE(0));
      expect((8 + n) % 8).toBe(0);
      const f = await SafetensorsFile.open(file);
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(bitsOf((await f.read('a')).data)).toEqual(bitsOf(src));
      expect(bitsOf((await f.read('b')).data)).toEqual(bitsOf(Float32Array.of(-0, 0, Infinity)));
      await f.close();
    },
  );

  it('round trips every one of the 65536 f16 bit patterns', async () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const file = path.join(tmp, 'all16.safetensors');
    await fsp.writeFile(
      file,
      handMade({ x: { dtype: 'F16', shape: [65536], data_offsets: [0, 131072] } }, new Uint8Array(all.buffer)),
    );
    const t = await readAll(file, 'x');
    const back = new Uint16Array(encodeFloats(t.data, 'F16').slice().buffer);
    for (let i = 0; i < 65536; i++) {
      const isNaN16 = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      if (isNaN16) expect(Number.isNaN(t.data[i])).toBe(true);
      else if (back[i] !== i) throw new Error(`f16 0x${i.toString(16)} came back as 0x${back[i].toString(16)}`);
    }
  });

  it('copies raw tensors of any dtype exactly', async () => {
    const src = await SafetensorsFile.open(path.join(FIX, 'multi.safetensors'));
    const file = path.join(tmp, 'copy.safetensors');
    await writeSafetensors(file, [
      ...src.names().map((name) => ({ ...src.info(name), name, bytes: () => src.readRaw(name).then((r) => r.bytes) })),
      { name: 'ids', dtype: 'I64' as const, shape: [2], bytes: new Uint8Array(new BigInt64Array([7n, -1n]).buffer) },
    ]);
    const copy = await SafetensorsFile.open(file);
    for (const name of src.names()) {
      expect(copy.info(name).dtype).toBe(src.info(name).dtype);
      expect(Buffer.from((await copy.readRaw(name)).bytes)).toEqual(Buffer.from((await src.readRaw(name)).bytes));
    }
    expect(Array.from(new BigInt64Array((await copy.readRaw('ids')).bytes.slice().buffer))).toEqual([7n, -1n]);
    await Promise.all([src.close(), copy.close()]);
    await expect(
      writeSafetensors(file, [{ name: 'x', dtype: 'I32', shape: [3], bytes: new Uint8Array(8) }]),
    ).rejects.toThrow("tensor 'x' has 8 bytes, but I32 [3] needs 12");
  });

  it('leaves no file behind when producing a tensor fails', async () => {
    const file = path.join(tmp, 'fail.safetensors');
    await expect(
      writeSafetensors(file, [
        {
          name: 'a',
          dtype: 'F32',
          shape: [2],
          data: () => {
            throw new Error('boom');
          },
        },
      ]),
    ).rejects.toThrow('boom');
    expect((await fsp.readdir(tmp)).filter((f) => f.includes('fail'))).toEqual([]);
  });

  it('rejects data whose length does not match the shape', async () => {
    await expect(
      writeSafetensors(path.join(tmp, 'bad.safetensors'), [
        { name: 'a', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) },
      ]),
    ).rejects.toThrow("tensor 'a' has 3 values, but shape [2,2] needs 4");
  });
});

/** A safetensors file from a header object and data bytes, for malformed-input tests. */
function handMade(header: unknown, data: Uint8Array, headerText = JSON.stringify(header)): Buffer {
  const h = Buffer.from(headerText);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

describe('bad input gives one clear line naming the file and problem', () => {
  async function openBytes(bytes: Buffer): Promise<string> {
    const file = path.join(tmp, 'model.safetensors');
    await fsp.writeFile(file, bytes);
    try {
      await SafetensorsFile.open(file);
    } catch (e) {
      expect(e).toBeInstanceOf(FtError);
      const msg = (e as Error).message;
      expect(msg).not.toContain('\n');
      expect(msg.startsWith(`${file}: `), msg).toBe(true); // the whole path, not the basename
      return msg.slice(path.dirname(file).length + 1);
    }
    throw new Error('expected open to fail');
  }

  it('a truncated file', async () => {
    const good = await fsp.readFile(path.join(FIX, 'f32.safetensors'));
    expect(await openBytes(good.subarray(0, good.length - 10))).toMatch(
      /^model\.safetensors: tensor 'w' data_offsets \[0, 384\] end past the file's 374 data bytes/,
    );
    expect(await openBytes(good.subarray(0, 5))).toBe(
      'model.safetensors: file is 5 bytes, too short for the 8-byte header length',
    );
  });

  it('bytes after the last tensor (the Rust safetensors library refuses them too: MetadataIncompleteBuffer)', async () => {
    const good = await fsp.readFile(path.join(FIX, 'f32.safetensors'));
    expect(await openBytes(Buffer.concat([good, Buffer.from('garbage')]))).toBe(
      "model.safetensors: 7 bytes after the last tensor's data (384 bytes): not one complete safetensors file",
    );
    expect(await openBytes(handMade({}, new Uint8Array(3)))).toBe(
      "model.safetensors: 3 bytes after the last tensor's data (0 bytes): not one complete safetensors file",
    );
  });

  it('a header that lies about offsets', async () => {
    const msg = await openBytes(
      handMade({ x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, new Uint8Array(16)),
    );
    expect(msg).toBe("model.safetensors: tensor 'x' data_offsets [0, 12] hold 12 bytes, but F32 [2,2] needs 16");
  });

  it('overlapping tensors', async () => {
    const msg = await openBytes(
      handMade(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        new Uint8Array(12),
      ),
    );
    expect(msg).toBe("model.safetensors: tensors 'a' [0,8] and 'b' [4,12] overlap");
  });

  it('an unknown dtype', async () => {
    const msg = await openBytes(handMade({ x: { dtype: 'F17', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
    expect(msg).toMatch(/^model\.safetensors: tensor 'x' has unknown dtype "F17" \(expected one of BOOL, U8, .*BF16/);
  });

  it('a header length larger than the file', async () => {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    expect(await openBytes(b)).toBe(
      "model.safetensors: header length 1000 is larger than the file's remaining 8 bytes (truncated or not safetensors)",
    );
  });

  it('invalid JSON', async () => {
    const msg = await openBytes(handMade(null, new Uint8Array(0), '{"x": {"dtype": "F32",'));
    expect(msg).toMatch(/^model\.safetensors: header is not valid JSON \(/);
  });

  it('a bad shape', async () => {
    const msg = await openBytes(
      handMade({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
    );
    expect(msg).toBe("model.safetensors: tensor 'x' has shape [-1] (expected a list of non-negative integers)");
  });

  it('reading a missing tensor or an integer tensor as float', async () => {
    const file = path.join(tmp, 'ints.safetensors');
    await fsp.writeFile(file, handMade({ i: { dtype: 'I32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
    const f = await SafetensorsFile.open(file);
    await expect(f.read('nope')).rejects.toThrow("ints.safetensors: no tensor 'nope'");
    await expect(f.read('i')).rejects.toThrow("ints.safetensors: tensor 'i' is I32, which has no float32 conversion");
    expect((await f.readRaw('i')).bytes.length).toBe(4);
    await f.close();
  });
});
