import { isUtf8 } from 'node:buffer';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Rng } from '../util/rng.ts';
import { firstIllFormed, Utf8Text } from './utf8-text.ts';

/** Code points at the edges of UTF-8's ranges encoded by Node, then, half the time, one byte set to an edge value. */
function nearUtf8(rng: Rng): Buffer {
  const points = [
    0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xfff, 0x1000, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x3ffff, 0x40000, 0x10ffff,
  ];
  const buf = Buffer.from(
    Array.from({ length: 1 + rng.int(3) }, () => String.fromCodePoint(points[rng.int(points.length)])).join(''),
  );
  const edges = [
    0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5,
    0xff,
  ];
  if (rng.next() < 0.5) buf[rng.int(buf.length)] = edges[rng.int(edges.length)];
  return rng.next() < 0.2 ? buf.subarray(0, rng.int(buf.length)) : buf;
}

describe('locating bytes that are not UTF-8', () => {
  it("agrees with Node's native validator: the bytes before the reported one are UTF-8, no completion of it is", () => {
    const rng = new Rng(7);
    let illFormed = 0;
    for (let t = 0; t < 5000; t++) {
      const buf = nearUtf8(rng);
      const bad = firstIllFormed(buf, 0, buf.length);
      if (bad < 0) {
        expect(isUtf8(buf)).toBe(true);
        continue;
      }
      illFormed++;
      expect(isUtf8(buf.subarray(0, bad))).toBe(true);
      for (let k = 1; bad + k <= buf.length && k <= 4; k++) expect(isUtf8(buf.subarray(0, bad + k))).toBe(false);
    }
    expect(illFormed).toBeGreaterThan(1000);
    expect(illFormed).toBeLessThan(4000);
  });

  it('decodes like Node for valid text and names each bad byte with its file offset, across read chunks', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-utf8-'));
    const valid = Buffer.from('aé€😀'.repeat(300000)); // 3 MiB: chunk ends fall inside characters
    const bad = Buffer.concat([valid, Buffer.from([0xff, 0x41, 0xe2, 0x82])]);
    await fsp.writeFile(path.join(dir, 'bad.txt'), bad);
    const text = new Utf8Text(path.join(dir, 'bad.txt'));
    let all = '';
    for await (const c of text.chunks()) all += c;
    expect(all).toBe(`${valid.toString('utf8')}\uFFFDA\uFFFD\uFFFD`);
    const first = text.claim(valid.toString('utf8').length + 1)!;
    expect(first).toEqual({ char: valid.toString('utf8').length, byte: valid.length, value: 0xff });
    expect(text.claim(all.length)).toEqual({ char: all.length - 2, byte: valid.length + 2, value: 0xe2 });
    expect(text.claim(Infinity)).toBeNull(); // claimed with the one before
    await fsp.rm(dir, { recursive: true, force: true });
  });
});
