// The GGUF v3 container (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): header + key/value metadata,
// tensor infos (name, ggml dims, type, offset), padding to the alignment, then each tensor's data at an aligned offset.
// Written by hand here because @huggingface/gguf serializes only the metadata section (no tensor infos or data).
// Every offset is computed from the tensors' byte sizes first, then the data streams one tensor at a time.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  GGUFValueType,
  serializeGgufMetadata,
  type GGMLQuantizationType,
  type GGUFTypedMetadata,
  type MetadataValue,
} from '@huggingface/gguf';
import { FtError } from '../util/errors.ts';
import { tempPathFor } from '../util/fs.ts';
import { progress } from '../util/progress.ts';

export const GGUF_DEFAULT_ALIGNMENT = 32;

/** One tensor as GGUF stores it: `ne` is ggml's dimension order (fastest-varying first = reversed PyTorch shape). */
export interface GgufTensor {
  name: string;
  ne: number[];
  type: GGMLQuantizationType;
  /** Size of the data, known before the data is made (the header holds every offset). */
  nbytes: number;
  /** The data, or a function making it when the writer reaches this tensor (so one is in memory at a time). */
  bytes: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

export type GgufKV = Record<string, { value: MetadataValue; type: GGUFValueType; subType?: GGUFValueType }>;

export interface GgufWriteOptions {
  alignment?: number;
  /** Label of a progress bar over the tensors (none when absent). */
  progressLabel?: string;
}

/** Tensor info records and each tensor's data offset (relative to the data section). */
function tensorInfos(tensors: GgufTensor[], pad: (n: number) => number): Buffer[] {
  const enc = new TextEncoder();
  let dataOffset = 0;
  return tensors.map((t) => {
    const name = enc.encode(t.name);
    const info = Buffer.alloc(8 + name.length + 4 + 8 * t.ne.length + 4 + 8);
    let o = info.writeBigUInt64LE(BigInt(name.length), 0);
    info.set(name, o);
    o = info.writeUInt32LE(t.ne.length, o + name.length);
    for (const n of t.ne) o = info.writeBigUInt64LE(BigInt(n), o);
    o = info.writeUInt32LE(t.type, o);
    info.writeBigUInt64LE(BigInt(dataOffset), o);
    dataOffset = pad(dataOffset + t.nbytes);
    return info;
  });
}

/** Writes a GGUF v3 file atomically (temp file, then rename); returns its size in bytes. */
export async function writeGguf(
  file: string,
  kv: GgufKV,
  tensors: GgufTensor[],
  opts: GgufWriteOptions = {},
): Promise<number> {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const typed = {
    version: { value: 3, type: GGUFValueType.UINT32 },
    tensor_count: { value: BigInt(tensors.length), type: GGUFValueType.UINT64 },
    kv_count: {
      value: BigInt(Object.keys(kv).length + (alignment !== GGUF_DEFAULT_ALIGNMENT ? 1 : 0)),
      type: GGUFValueType.UINT64,
    },
    ...kv,
  } as GGUFTypedMetadata;
  if (alignment !== GGUF_DEFAULT_ALIGNMENT)
    typed['general.alignment'] = { value: alignment, type: GGUFValueType.UINT32 };
  // alignment 1 = no trailing padding, so the tensor infos follow the KV pairs directly
  const head = serializeGgufMetadata(typed, { alignment: 1 });
  const pad = (n: number) => Math.ceil(n / alignment) * alignment;
  const infos = tensorInfos(tensors, pad);
  const headerLen = head.length + infos.reduce((s, b) => s + b.length, 0);
  const dataStart = pad(headerLen);

  const tmp = tempPathFor(file);
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  const fh = await fsp.open(tmp, 'w');
  const bar = opts.progressLabel ? progress(opts.progressLabel, tensors.length, 'tensors') : null;
  try {
    let pos = 0;
    const put = async (b: Uint8Array) => {
      await fh.write(b, 0, b.length, pos);
      pos += b.length;
    };
    await put(head);
    for (const b of infos) await put(b);
    await put(new Uint8Array(dataStart - headerLen));
    let done = 0;
    for (const t of tensors) {
      const bytes = typeof t.bytes === 'function' ? await t.bytes() : t.bytes;
      if (bytes.length !== t.nbytes)
        throw new FtError(
          `${file}: tensor '${t.name}' came out ${bytes.length} bytes, but its header entry says ${t.nbytes}`,
        );
      await put(bytes);
      await put(new Uint8Array(pad(pos - dataStart) - (pos - dataStart)));
      bar?.update(++done);
    }
    bar?.stop();
    await fh.close();
    await fsp.rename(tmp, file);
    return pos;
  } catch (e) {
    bar?.stop();
    await fh.close().catch(() => {});
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
