// The safetensors format (https://github.com/huggingface/safetensors): u64 little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {str: str}}, then the data.
// Read one tensor at a time with positioned reads; write one tensor at a time to a temp file, then rename.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { FtError } from '../util/errors.ts';
import { tempPathFor } from '../util/fs.ts';

/** Bytes per element of every dtype the format defines. */
export const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;
export type Dtype = keyof typeof DTYPE_BYTES;
/** The dtypes `read` converts to float32 and `writeSafetensors` can produce. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data section. */
  dataOffsets: [number, number];
}

/** A tensor as float32, row-major. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** A tensor's bytes exactly as stored (little-endian). */
export interface RawTensor {
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array;
}

/** The format's own limit on the JSON header (100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const fmtShape = (shape: readonly number[]) => `[${shape.join(',')}]`;

/** An open safetensors file: header parsed and validated, tensors read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly file: string,
    private fh: FileHandle,
    /** Absolute file offset where the data section starts (8 + N). */
    private readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  /** Opens `file` and validates its header; throws FtError naming the file and the problem. */
  static async open(file: string): Promise<SafetensorsFile> {
    const name = file; // errors name the whole path
    let fh: FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (e) {
      throw new FtError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      const size = (await fh.stat()).size;
      if (size < 8) throw new FtError(`${name}: file is ${size} bytes, too short for the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      await readExactly(fh, lenBuf, 0);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(size - 8))
        throw new FtError(
          `${name}: header length ${n} is larger than the file's remaining ${size - 8} bytes (truncated or not safetensors)`,
        );
      if (n > BigInt(MAX_HEADER_BYTES))
        throw new FtError(`${name}: header length ${n} exceeds the format's ${MAX_HEADER_BYTES}-byte limit`);
      const headerLen = Number(n);
      const headerBuf = Buffer.alloc(headerLen);
      await readExactly(fh, headerBuf, 8);
      const { tensors, metadata } = parseHeader(headerBuf, name, size - 8 - headerLen);
      return new SafetensorsFile(file, fh, 8 + headerLen, tensors, metadata);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new FtError(`${this.file}: no tensor '${name}'`);
    return t;
  }

  /** The tensor's bytes as stored, for exact copies and non-float dtypes. */
  async readRaw(name: string): Promise<RawTensor> {
    const t = this.info(name);
    const [begin, end] = t.dataOffsets;
    const bytes = new Uint8Array(end - begin);
    await readExactly(this.fh, bytes, this.dataStart + begin);
    return { dtype: t.dtype, shape: [...t.shape], bytes };
  }

  /** The tensor as float32 (F32, F16, BF16 and F64 are converted; other dtypes need readRaw). */
  async read(name: string): Promise<TensorData> {
    const t = this.info(name);
    if (!(t.dtype in TO_F32)) {
      throw new FtError(
        `${this.file}: tensor '${name}' is ${t.dtype}, which has no float32 conversion (expected F32, F16, BF16 or F64)`,
      );
    }
    const raw = await this.readRaw(name);
    return { shape: raw.shape, data: TO_F32[t.dtype as keyof typeof TO_F32](raw.bytes) };
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function readExactly(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new FtError(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Validates the JSON header against the format: known dtypes, integer shapes, offsets matching dtype×shape, inside the data, non-overlapping. */
function parseHeader(
  buf: Buffer,
  name: string,
  dataBytes: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new FtError(`${name}: header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new FtError(`${name}: header must be a JSON object`);
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(json)) {
    if (key === '__metadata__') {
      if (
        typeof value !== 'object' ||
        value === null ||
        Array.isArray(value) ||
        Object.values(value).some((v) => typeof v !== 'string')
      ) {
        throw new FtError(`${name}: __metadata__ must be an object of strings`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const where = `${name}: tensor '${key}'`;
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v !== 'object' || v === null)
      throw new FtError(`${where} must be an object with dtype, shape, data_offsets`);
    if (typeof v.dtype !== 'string' || !(v.dtype in DTYPE_BYTES)) {
      throw new FtError(
        `${where} has unknown dtype ${JSON.stringify(v.dtype)} (expected one of ${Object.keys(DTYPE_BYTES).join(', ')})`,
      );
    }
    const dtype = v.dtype as Dtype;
    if (!Array.isArray(v.shape) || !v.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FtError(`${where} has shape ${JSON.stringify(v.shape)} (expected a list of non-negative integers)`);
    }
    const off = v.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      off[0] > off[1]
    ) {
      throw new FtError(
        `${where} has data_offsets ${JSON.stringify(off)} (expected [begin, end] with 0 <= begin <= end)`,
      );
    }
    const shape = v.shape as number[];
    const [begin, end] = off as [number, number];
    const need = numel(shape) * DTYPE_BYTES[dtype];
    if (end - begin !== need) {
      throw new FtError(
        `${where} data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${dtype} ${fmtShape(shape)} needs ${need}`,
      );
    }
    if (end > dataBytes) {
      throw new FtError(
        `${where} data_offsets [${begin}, ${end}] end past the file's ${dataBytes} data bytes (file truncated?)`,
      );
    }
    tensors.set(key, { dtype, shape, dataOffsets: [begin, end] });
  }
  const sorted = [...tensors.entries()]
    .filter(([, t]) => t.dataOffsets[1] > t.dataOffsets[0])
    .sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  for (let i = 1; i < sorted.length; i++) {
    const [prevName, prev] = sorted[i - 1];
    const [curName, cur] = sorted[i];
    if (cur.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new FtError(
        `${name}: tensors '${prevName}' [${prev.dataOffsets}] and '${curName}' [${cur.dataOffsets}] overlap`,
      );
    }
  }
  const dataEnd = sorted.length ? sorted[sorted.length - 1][1].dataOffsets[1] : 0;
  if (dataBytes > dataEnd)
    throw new FtError(
      `${name}: ${dataBytes - dataEnd} bytes after the last tensor's data (${dataEnd} bytes): not one complete safetensors file`,
    );
  return { tensors, metadata };
}

// ---- float conversions (hand-written: Node 20 has no Float16Array, and bf16 has no JS type) ----

/** f16 bits -> float32 value, for all 65536 patterns (built once). */
let f16Table: Float32Array | null = null;
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant * 2^-24, exactly representable in f32
      const f = new Float32Array([mant * 2 ** -24]);
      bits[h] = (sign | new Uint32Array(f.buffer)[0]) >>> 0;
    } else if (exp === 31) {
      bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16Table = new Float32Array(bits.buffer);
  return f16Table;
}

/** float32 bits -> f16 bits, round to nearest even; NaN stays NaN (quiet), overflow -> inf. */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // f16 subnormal (or zero): value in units of 2^-24 is mant24 >> shift
    const shift = 14 - e;
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is correct, up to inf
  return sign | h;
}

/** float32 bits -> bf16 bits, round to nearest even; NaN stays NaN (quiet). */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return (((x + 0x7fff + ((x >>> 16) & 1)) | 0) >>> 16) & 0xffff;
}

/** A little-endian view of `bytes` as `T`, copying only when the offset is misaligned. */
function view<T>(bytes: Uint8Array, width: number, make: (b: ArrayBuffer, off: number, n: number) => T): T {
  const n = bytes.length / width;
  if (bytes.byteOffset % width === 0) return make(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  return make(bytes.slice().buffer as ArrayBuffer, 0, n);
}

const TO_F32 = {
  F32: (b: Uint8Array) => view(b, 4, (buf, off, n) => new Float32Array(buf, off, n)),
  F64: (b: Uint8Array) => Float32Array.from(view(b, 8, (buf, off, n) => new Float64Array(buf, off, n))),
  F16: (b: Uint8Array) => {
    const h = view(b, 2, (buf, off, n) => new Uint16Array(buf, off, n));
    const table = f16ToF32Table();
    const out = new Float32Array(h.length);
    for (let i = 0; i < h.length; i++) out[i] = table[h[i]];
    return out;
  },
  BF16: (b: Uint8Array) => {
    const h = view(b, 2, (buf, off, n) => new Uint16Array(buf, off, n));
    const out = new Int32Array(h.length);
    for (let i = 0; i < h.length; i++) out[i] = h[i] << 16;
    return new Float32Array(out.buffer);
  },
};

/** float32 values encoded as `dtype`, little-endian bytes. */
export function encodeFloats(data: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bits = new Int32Array(data.buffer, data.byteOffset, data.length); // int32, not uint32: stays in V8's small-integer fast path
  const out = new Uint16Array(data.length);
  if (dtype === 'F16') for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]);
  else for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16(bits[i]);
  return new Uint8Array(out.buffer);
}

/** Decodes little-endian float bytes of `dtype` to float32. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDtype | 'F64'): Float32Array {
  return TO_F32[dtype](bytes);
}

// ---- writer ----

export interface SafetensorsEntry {
  name: string;
  dtype: FloatDtype;
  shape: number[];
  /** The values as float32, or a function producing them when the writer reaches this tensor (so one is in memory at a time). */
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
}

/** A tensor written from bytes already in its dtype (any dtype): exact copies, integer tensors. */
export interface RawEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

/** The bytes `e` writes, checked against its dtype and shape. */
async function entryBytes(e: SafetensorsEntry | RawEntry, file: string): Promise<Uint8Array> {
  if ('bytes' in e) {
    const bytes = typeof e.bytes === 'function' ? await e.bytes() : e.bytes;
    const need = numel(e.shape) * DTYPE_BYTES[e.dtype];
    if (bytes.length !== need)
      throw new FtError(
        `${file}: tensor '${e.name}' has ${bytes.length} bytes, but ${e.dtype} ${fmtShape(e.shape)} needs ${need}`,
      );
    return bytes;
  }
  const data = typeof e.data === 'function' ? await e.data() : e.data;
  if (data.length !== numel(e.shape)) {
    throw new FtError(
      `${file}: tensor '${e.name}' has ${data.length} values, but shape ${fmtShape(e.shape)} needs ${numel(e.shape)}`,
    );
  }
  return encodeFloats(data, e.dtype);
}

/**
 * Writes a safetensors file atomically: header (padded with spaces so the data starts 8-byte aligned),
 * then each tensor in order, float32 values converted to their dtype with round-to-nearest-even, raw bytes as given.
 * Same input -> same bytes.
 */
export async function writeSafetensors(
  file: string,
  entries: (SafetensorsEntry | RawEntry)[],
  metadata: Record<string, string> = { format: 'pt' },
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const seen = new Set<string>();
  for (const e of entries) {
    if (e.name === '__metadata__' || seen.has(e.name))
      throw new FtError(`${file}: duplicate or reserved tensor name '${e.name}'`);
    seen.add(e.name);
    const bytes = numel(e.shape) * DTYPE_BYTES[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));

  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = tempPathFor(file);
  const fh = await fsp.open(tmp, 'w');
  try {
    await fh.write(len);
    await fh.write(json);
    for (const e of entries) await fh.write(await entryBytes(e, file));
    await fh.close();
    await fsp.rename(tmp, file);
  } catch (e) {
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
