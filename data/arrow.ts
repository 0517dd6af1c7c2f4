// Arrow IPC in and out: the stream format `datasets` writes (data-00000-of-00001.arrow) and the file format.
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { once } from 'node:events';
import * as arrow from 'apache-arrow';
import { FtError } from '../util/errors.ts';
import { tempPathFor } from '../util/fs.ts';
import { StreamEndWatch, watched } from './arrow-stream-end.ts';
import type { Row, RowBatch } from './types.ts';

/** An Arrow value as plain JS: nested vectors -> arrays, struct rows -> objects, int64 -> number. */
function plain(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v !== 'object') return v;
  if (v instanceof arrow.Vector) return Array.from(v, plain);
  if (v instanceof Uint8Array) return v;
  const out: Row = {};
  for (const [k, x] of Object.entries((v as { toJSON(): object }).toJSON())) out[k] = plain(x);
  return out;
}

/** One column of a batch as plain values; strings take the fast path (whole column at once). */
function columnValues(col: arrow.Vector): unknown[] {
  if (arrow.DataType.isUtf8(col.type) || arrow.DataType.isLargeUtf8(col.type) || arrow.DataType.isBool(col.type))
    return col.toArray() as unknown[];
  const out = new Array<unknown>(col.length);
  for (let i = 0; i < col.length; i++) out[i] = plain(col.get(i));
  return out;
}

const FILE_MAGIC = 'ARROW1';

/** Refuses a file-format Arrow file without its footer; returns whether `file` is in the stream format. */
async function checkFileFooter(file: string): Promise<boolean> {
  let head = Buffer.alloc(0);
  let tail = Buffer.alloc(0);
  try {
    const fh = await fsp.open(file);
    try {
      const { size } = await fh.stat();
      ({ buffer: head } = await fh.read(Buffer.alloc(Math.min(size, 8)), 0, Math.min(size, 8), 0));
      ({ buffer: tail } = await fh.read(Buffer.alloc(Math.min(size, 6)), 0, Math.min(size, 6), Math.max(0, size - 6)));
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new FtError(`${file}: cannot read (${(e as Error).message})`);
  }
  if (head.subarray(0, 6).toString('latin1') !== FILE_MAGIC) return true;
  if (tail.toString('latin1') !== FILE_MAGIC)
    throw new FtError(`${file}: truncated Arrow file: it does not end with the Arrow file footer (${FILE_MAGIC})`);
  return false;
}

/** A reader over `file`; for the stream format, `end` tells afterwards whether the end-of-stream marker came. */
async function openReader(file: string) {
  const end = (await checkFileFooter(file)) ? new StreamEndWatch() : null;
  try {
    const bytes = createReadStream(file);
    const reader = await arrow.RecordBatchReader.from(end ? watched(bytes, end) : bytes);
    await reader.open();
    return { reader, end };
  } catch (e) {
    throw new FtError(`${file}: not a readable Arrow IPC file (${(e as Error).message})`);
  }
}

function checkStreamEnd(file: string, end: StreamEndWatch | null, rows: number): void {
  if (end && !end.ended)
    throw new FtError(`${file}: truncated Arrow stream: it ends after row ${rows} without the end-of-stream marker`);
}

/** The columns of an Arrow file as `name: type`, from its schema message only. */
export async function arrowColumns(file: string): Promise<{ name: string; type: string }[]> {
  const { reader } = await openReader(file);
  const cols = reader.schema.fields.map((f) => ({ name: f.name, type: String(f.type) }));
  await reader.cancel();
  return cols;
}

/**
 * Rows of an Arrow IPC file (stream or file format), one record batch at a time.
 * `columns` limits which columns are materialized (missing ones are simply absent from the rows).
 */
export async function* readArrowRows(file: string, columns?: string[]): AsyncGenerator<RowBatch> {
  const { reader, end } = await openReader(file);
  let offset = 0;
  const it = reader[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<arrow.RecordBatch>;
    try {
      next = await it.next();
    } catch (e) {
      throw new FtError(`${file}: corrupt Arrow data after row ${offset} (${(e as Error).message})`);
    }
    if (next.done) return checkStreamEnd(file, end, offset);
    const batch = next.value;
    const names = batch.schema.fields.map((f) => f.name).filter((n) => !columns || columns.includes(n));
    const cols = names.map((n) => columnValues(batch.getChild(n)!));
    const rows: Row[] = new Array(batch.numRows);
    for (let i = 0; i < batch.numRows; i++) {
      const row: Row = {};
      for (let c = 0; c < names.length; c++) row[names[c]] = cols[c][i];
      rows[i] = row;
    }
    yield { file, offset, rows };
    offset += batch.numRows;
  }
}

/** Number of rows in an Arrow file, counted from the record batch headers as batches stream by. */
export async function countArrowRows(file: string): Promise<number> {
  const { reader, end } = await openReader(file);
  let n = 0;
  try {
    for await (const b of reader) n += b.numRows;
  } catch (e) {
    throw new FtError(`${file}: corrupt Arrow data after row ${n} (${(e as Error).message})`);
  }
  checkStreamEnd(file, end, n);
  return n;
}

/**
 * Arrow type of a column from sample values (strings, numbers, booleans, lists, objects; nulls allowed).
 * Hand-written because apache-arrow's own inference fails on nulls and empty lists.
 */
export function inferArrowType(values: unknown[], column: string): arrow.DataType {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (present.length === 0) return new arrow.Utf8(); // all null: a nullable string column
  const kinds = new Set(present.map((v) => (Array.isArray(v) ? 'list' : typeof v)));
  if (kinds.size > 1)
    throw new FtError(
      `column '${column}' mixes value kinds (${[...kinds].join(', ')}); Arrow needs one type per column`,
    );
  const kind = [...kinds][0];
  if (kind === 'string') return new arrow.Utf8();
  if (kind === 'boolean') return new arrow.Bool();
  if (kind === 'number')
    return (present as number[]).every(Number.isSafeInteger) ? new arrow.Int64() : new arrow.Float64();
  if (kind === 'list') {
    const items = (present as unknown[][]).flat();
    return new arrow.List(new arrow.Field('item', inferArrowType(items, `${column}[]`), true));
  }
  if (kind === 'object') {
    const keys = [...new Set(present.flatMap((o) => Object.keys(o as object)))];
    return new arrow.Struct(
      keys.map(
        (k) =>
          new arrow.Field(
            k,
            inferArrowType(
              present.map((o) => (o as Row)[k]),
              `${column}.${k}`,
            ),
            true,
          ),
      ),
    );
  }
  throw new FtError(`column '${column}': cannot store ${kind} values in Arrow`);
}

/** Converts a JS value to what vectorFromArray expects for `type` (int64 takes bigint). */
function toArrowValue(v: unknown, type: arrow.DataType): unknown {
  if (v === null || v === undefined) return null;
  if (arrow.DataType.isInt(type) && type.bitWidth === 64) return BigInt(v as number);
  if (arrow.DataType.isList(type)) return (v as unknown[]).map((x) => toArrowValue(x, type.children[0].type));
  if (arrow.DataType.isStruct(type)) {
    const out: Row = {};
    for (const f of type.children) out[f.name] = toArrowValue((v as Row)[f.name], f.type);
    return out;
  }
  return v;
}

/**
 * Writes rows as an Arrow IPC stream (the layout `datasets` saves), one record batch per input batch,
 * atomically. The schema comes from the first batch; later rows must fit it. Returns the row count.
 */
export async function writeArrowStream(target: string, batches: AsyncIterable<Row[]>): Promise<number> {
  const tmp = tempPathFor(target);
  const sink = createWriteStream(tmp);
  const writer = new arrow.RecordBatchStreamWriter();
  writer.toNodeStream().pipe(sink);
  let schema: arrow.Schema | null = null;
  let n = 0;
  try {
    for await (const rows of batches) {
      if (rows.length === 0) continue;
      if (!schema) {
        const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
        schema = new arrow.Schema(
          names.map(
            (name) =>
              new arrow.Field(
                name,
                inferArrowType(
                  rows.map((r) => r[name]),
                  name,
                ),
                true,
              ),
          ),
        );
      }
      const known = new Set(schema.fields.map((f) => f.name));
      rows.forEach((r, i) => {
        const extra = Object.keys(r).find((k) => !known.has(k));
        if (extra !== undefined)
          throw new FtError(
            `row ${n + i + 1}: column '${extra}' is not in the schema taken from the first rows (${[...known].join(', ')})`,
          );
      });
      const data: Record<string, arrow.Data> = {};
      for (const f of schema.fields) {
        try {
          data[f.name] = arrow.vectorFromArray(
            rows.map((r) => toArrowValue(r[f.name], f.type)),
            f.type,
          ).data[0];
        } catch (e) {
          throw new FtError(
            `column '${f.name}' in rows ${n + 1}-${n + rows.length}: values do not fit type ${f.type} (${(e as Error).message})`,
          );
        }
      }
      writer.write(new arrow.RecordBatch(data));
      n += rows.length;
    }
    if (!schema) throw new FtError(`no rows to write to ${target}: the dataset is empty`);
    writer.finish();
    await once(sink, 'finish');
    await fsp.rename(tmp, target);
    return n;
  } catch (e) {
    writer.close(); // (abort() rejects an internal promise nobody awaits)
    sink.destroy();
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}
