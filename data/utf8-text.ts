// A file's text in chunks, with the place of every byte that is not UTF-8 kept (Node's decoder would silently
// turn it into U+FFFD). Valid chunks take Node's native check and decoder; only a chunk that fails is walked here.
import { createReadStream } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { FtError } from '../util/errors.ts';

/** An ill-formed byte: where it is in the file, and the index of the U+FFFD that stands for it in the text. */
export interface Utf8Fault {
  /** index in the text read so far (all chunks concatenated) */
  char: number;
  /** offset in the file, from 0 */
  byte: number;
  value: number;
}

export const describeFault = (f: Utf8Fault) =>
  `not valid UTF-8 (byte 0x${f.value.toString(16).padStart(2, '0')} at byte offset ${f.byte})`;

/** Bytes a lead byte announces (0 for a byte no well-formed sequence starts with). */
const sequenceLength = (b: number) => (b < 0x80 ? 1 : b < 0xc2 ? 0 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : b < 0xf5 ? 4 : 0);

/** Index of the first byte in buf[from, to) that does not start a well-formed sequence (Unicode table 3-7), or -1. */
export function firstIllFormed(buf: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; ) {
    const b = buf[i];
    const n = sequenceLength(b);
    if (n === 0 || i + n > to) return i;
    const lo = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const hi = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    if (n > 1 && (buf[i + 1] < lo || buf[i + 1] > hi)) return i;
    for (let k = 2; k < n; k++) if ((buf[i + k] & 0xc0) !== 0x80) return i;
    i += n;
  }
  return -1;
}

/** Length of the tail of buf that is the start of a sequence the next chunk completes (0 if none). */
function unfinishedTail(buf: Uint8Array): number {
  for (let k = 1; k <= Math.min(3, buf.length); k++) {
    const b = buf[buf.length - k];
    if ((b & 0xc0) !== 0x80) return sequenceLength(b) > k ? k : 0;
  }
  return 0;
}

export class Utf8Text {
  private faults: Utf8Fault[] = [];
  private head = 0;
  private chars = 0;
  private bytes = 0;

  constructor(private readonly file: string) {}

  /** The text of the file in chunks of about 1 MiB; characters split across reads stay whole. */
  async *chunks(): AsyncGenerator<string> {
    const stream = createReadStream(this.file, { highWaterMark: 1 << 20 });
    let held: Buffer = Buffer.alloc(0);
    try {
      for await (const raw of stream) {
        const buf: Buffer = held.length ? Buffer.concat([held, raw as Buffer]) : (raw as Buffer);
        const end = buf.length - unfinishedTail(buf);
        held = buf.subarray(end);
        yield this.decode(buf.subarray(0, end));
      }
    } catch (e) {
      throw new FtError(`${this.file}: cannot read (${(e as Error).message})`);
    }
    if (held.length) yield this.decode(held);
  }

  /**
   * The first fault in the text before index `end` not claimed yet, or null; every fault before `end` is claimed.
   * A reader calls it with the end of each row, in order.
   */
  claim(end: number): Utf8Fault | null {
    if (this.head === this.faults.length || this.faults[this.head].char >= end) return null;
    const first = this.faults[this.head];
    while (this.head < this.faults.length && this.faults[this.head].char < end) this.head++;
    if (this.head === this.faults.length) {
      this.faults = [];
      this.head = 0;
    }
    return first;
  }

  private decode(buf: Buffer): string {
    let text: string;
    if (isUtf8(buf)) text = buf.toString('utf8');
    else {
      text = '';
      for (let i = 0; i < buf.length; ) {
        const bad = firstIllFormed(buf, i, buf.length);
        const stop = bad < 0 ? buf.length : bad;
        text += buf.toString('utf8', i, stop);
        if (bad < 0) break;
        this.faults.push({ char: this.chars + text.length, byte: this.bytes + bad, value: buf[bad] });
        text += '\uFFFD';
        i = bad + 1;
      }
    }
    this.chars += text.length;
    this.bytes += buf.length;
    return text;
  }
}
