// Whether an Arrow IPC stream reached its end-of-stream marker. apache-arrow's reader treats the end of the bytes
// like the marker, so a stream cut at a record-batch boundary would read as a valid shorter dataset.
import * as arrow from 'apache-arrow';

const CONTINUATION = -1;

/**
 * Follows the IPC stream's message framing (continuation 0xFFFFFFFF, int32 metadata length, metadata, body of the
 * metadata's bodyLength; pre-0.15 streams omit the continuation) over the bytes as they pass to the reader.
 * Only metadata is buffered; bodies are skipped by count.
 */
export class StreamEndWatch {
  private part: 'prefix' | 'length' | 'metadata' | 'body' | 'end' = 'prefix';
  private need = 4;
  private held = new Uint8Array(4);
  private filled = 0;

  /** True once the end-of-stream marker (a zero metadata length) came at a message boundary. */
  get ended(): boolean {
    return this.part === 'end';
  }

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length && this.part !== 'end') {
      const take = Math.min(this.need, chunk.length - i);
      if (this.part !== 'body') this.held.set(chunk.subarray(i, i + take), this.filled);
      this.filled += take;
      this.need -= take;
      i += take;
      if (this.need === 0) this.advance();
    }
  }

  private advance(): void {
    if (this.part === 'metadata') {
      const bodyLength = Number(arrow.Message.decode(this.held).bodyLength);
      return bodyLength > 0 ? this.expect('body', bodyLength) : this.expect('prefix', 4);
    }
    if (this.part === 'body') return this.expect('prefix', 4);
    const value = new DataView(this.held.buffer, this.held.byteOffset, 4).getInt32(0, true);
    if (this.part === 'prefix' && value === CONTINUATION) return this.expect('length', 4);
    if (value === 0) return this.expect('end', 0);
    if (value < 0) throw new Error(`invalid message metadata length ${value}`);
    this.expect('metadata', value);
  }

  private expect(part: StreamEndWatch['part'], bytes: number): void {
    this.part = part;
    this.need = bytes;
    this.filled = 0;
    if (part === 'metadata') this.held = new Uint8Array(bytes);
    else if (this.held.length !== 4) this.held = new Uint8Array(4);
  }
}

/** The bytes of `source`, unchanged, fed to `watch` on the way. */
export async function* watched(source: AsyncIterable<Uint8Array>, watch: StreamEndWatch): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    watch.feed(chunk);
    yield chunk;
  }
}
