// Parquet (as the Hugging Face Hub serves datasets) read one row group at a time through hyparquet.
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
  type AsyncBuffer,
  type FileMetaData,
} from 'hyparquet';
import { FtError } from '../util/errors.ts';
import type { Row, RowBatch } from './types.ts';

async function open(file: string): Promise<{ buf: AsyncBuffer; meta: FileMetaData }> {
  try {
    const buf = await asyncBufferFromFile(file);
    return { buf, meta: await parquetMetadataAsync(buf) };
  } catch (e) {
    throw new FtError(`${file}: not a readable Parquet file (${(e as Error).message})`);
  }
}

/** Top-level columns of a Parquet file as `name: type` and its row count, from the footer only. */
export async function parquetInfo(file: string): Promise<{ columns: { name: string; type: string }[]; rows: number }> {
  const { meta } = await open(file);
  const columns = parquetSchema(meta).children.map((c) => {
    const e = c.element;
    const type = c.children.length
      ? (e.converted_type ?? e.logical_type?.type ?? 'GROUP')
      : (e.logical_type?.type ?? e.converted_type ?? e.type ?? '?');
    return { name: e.name, type: String(type) };
  });
  return { columns, rows: Number(meta.num_rows) };
}

/** Rows of a Parquet file, one row group per batch so memory is bounded by the largest row group. */
export async function* readParquetRows(file: string, columns?: string[]): AsyncGenerator<RowBatch> {
  const { buf, meta } = await open(file);
  const present = new Set(parquetSchema(meta).children.map((c) => c.element.name));
  const wanted = columns?.filter((c) => present.has(c));
  let offset = 0;
  for (const group of meta.row_groups) {
    const n = Number(group.num_rows);
    let rows: Row[];
    try {
      rows = await parquetReadObjects({
        file: buf,
        metadata: meta,
        columns: wanted,
        rowStart: offset,
        rowEnd: offset + n,
      });
    } catch (e) {
      throw new FtError(`${file}: corrupt Parquet data in rows ${offset}..${offset + n - 1} (${(e as Error).message})`);
    }
    yield { file, offset, rows: rows.map(plainRow) };
    offset += n;
  }
}

/** hyparquet gives int64 as bigint; the pipeline wants plain JSON-like values. */
function plainRow(r: Row): Row {
  for (const k in r) if (typeof r[k] === 'bigint') r[k] = Number(r[k]);
  return r;
}
