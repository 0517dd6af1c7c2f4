// Where a dataset's rows come from: a file, a glob of shards, or a `datasets` save_to_disk folder; format by magic bytes.
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FtError } from '../util/errors.ts';
import { isBareFileName } from '../util/fs.ts';
import { isGlob, segmentRegex } from '../util/glob.ts';
import { arrowColumns, countArrowRows, readArrowRows } from './arrow.ts';
import { readJsonRows } from './json.ts';
import { parquetInfo, readParquetRows } from './parquet.ts';
import type { RowBatch } from './types.ts';
import type { UnreadableRows } from './unreadable-row.ts';

export type FileFormat = 'arrow' | 'json' | 'parquet';
export const DATA_EXTENSIONS = ['.arrow', '.json', '.jsonl', '.parquet'];

async function listDir(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Files matching a glob pattern; `**` matches any number of folders. Sorted so shard order is stable. */
async function expandGlob(pattern: string): Promise<string[]> {
  const segs = pattern.split(/[\\/]/);
  const root = path.isAbsolute(pattern) ? path.parse(pattern).root : '.';
  const out: string[] = [];
  const walk = async (dir: string, i: number): Promise<void> => {
    if (i === segs.length) return;
    const seg = segs[i];
    const last = i === segs.length - 1;
    if (seg === '' || seg === '.') return walk(dir, i + 1);
    if (seg === '**') {
      await walk(dir, i + 1);
      for (const e of await listDir(dir)) if (e.isDirectory()) await walk(path.join(dir, e.name), i);
      return;
    }
    if (!isGlob(seg)) {
      const p = path.join(dir, seg);
      if (!last) return walk(p, i + 1);
      if ((await fsp.stat(p).catch(() => null))?.isFile()) out.push(p);
      return;
    }
    const re = segmentRegex(seg);
    for (const e of await listDir(dir)) {
      if (!re.test(e.name)) continue;
      const p = path.join(dir, e.name);
      if (last ? e.isFile() : e.isDirectory()) await (last ? out.push(p) : walk(p, i + 1));
    }
  };
  await walk(root, 0);
  return [...new Set(out)].sort();
}

/**
 * The data files behind a dataset `path`: a file; a glob of shards (`data/train-*.parquet`);
 * or a folder — a `datasets` save_to_disk folder lists its shards in state.json (a DatasetDict's: its train split's),
 * otherwise every data file in it.
 */
export async function resolveDataFiles(spec: string, baseDir = '.'): Promise<string[]> {
  const full = path.resolve(baseDir, spec);
  if (isGlob(spec)) {
    const files = (await expandGlob(full)).filter((f) => DATA_EXTENSIONS.includes(path.extname(f)));
    if (files.length === 0) throw new FtError(`dataset path '${spec}': no .arrow/.json/.jsonl/.parquet files match`);
    return files;
  }
  const st = await fsp.stat(full).catch(() => null);
  if (!st) throw new FtError(`dataset path '${spec}': no such file or folder`);
  if (st.isFile()) return [full];
  // a DatasetDict.save_to_disk folder: its train split, as load_from_disk(...)['train']
  if (existsSync(path.join(full, 'dataset_dict.json')) && existsSync(path.join(full, 'train')))
    return resolveDataFiles(path.join(full, 'train'));
  const state = await fsp.readFile(path.join(full, 'state.json'), 'utf8').catch(() => null);
  if (state !== null) {
    let listed: unknown;
    try {
      listed = (JSON.parse(state) as { _data_files?: { filename: string }[] })._data_files;
    } catch (e) {
      throw new FtError(`${path.join(full, 'state.json')}: invalid JSON (${(e as Error).message})`);
    }
    const stateFile = path.join(full, 'state.json');
    if (!Array.isArray(listed) || listed.length === 0)
      throw new FtError(`${stateFile}: expected _data_files: [{filename}, ...]`);
    return listed.map((d: { filename?: unknown }, i) => {
      if (!isBareFileName(d?.filename))
        throw new FtError(
          `${stateFile}: _data_files[${i}].filename ${JSON.stringify(d?.filename)} must be a file name in the dataset folder`,
        );
      return path.join(full, d.filename);
    });
  }
  const files = (await fsp.readdir(full)).filter((f) => DATA_EXTENSIONS.includes(path.extname(f))).sort();
  if (files.length === 0) throw new FtError(`dataset folder '${spec}' holds no .arrow/.json/.jsonl/.parquet files`);
  return files.map((f) => path.join(full, f));
}

/** The files of a datasets entry: its `data_files` (globs relative to its `path` folder) when set, else its `path`. */
export async function entryFiles(
  entry: { path: string; data_files?: string | string[] },
  baseDir = '.',
): Promise<string[]> {
  if (entry.data_files === undefined) return resolveDataFiles(entry.path, baseDir);
  const dir = path.resolve(baseDir, entry.path);
  const lists = await Promise.all([entry.data_files].flat().map((f) => resolveDataFiles(f, dir)));
  return [...new Set(lists.flat())];
}

/** Format of a data file by its first bytes (Arrow: 'ARROW1' or the 0xFFFFFFFF stream marker; Parquet: 'PAR1'), else JSON. */
export async function detectFormat(file: string): Promise<FileFormat> {
  const fh = await fsp.open(file).catch((e: Error) => {
    throw new FtError(`${file}: cannot open (${e.message})`);
  });
  const head = Buffer.alloc(8);
  try {
    await fh.read(head, 0, 8, 0);
  } finally {
    await fh.close();
  }
  if (head.subarray(0, 6).toString('latin1') === 'ARROW1' || head.readUInt32LE(0) === 0xffffffff) return 'arrow';
  if (head.subarray(0, 4).toString('latin1') === 'PAR1') return 'parquet';
  const ext = path.extname(file);
  if (ext === '.arrow')
    throw new FtError(`${file}: not an Arrow IPC file (no ARROW1 magic or stream marker at the start)`);
  if (ext === '.parquet') throw new FtError(`${file}: not a Parquet file (no PAR1 magic at the start)`);
  return 'json';
}

/**
 * Row batches of one file in any supported format; `columns` is a hint for columnar formats. A JSON row that is not
 * UTF-8 stops the read, or with `unreadable: 'mark'` comes as an unreadableRow (for on_bad_row: skip).
 */
export async function* readFileRows(
  file: string,
  columns?: string[],
  unreadable?: UnreadableRows,
): AsyncGenerator<RowBatch> {
  const format = await detectFormat(file);
  if (format === 'arrow') yield* readArrowRows(file, columns);
  else if (format === 'parquet') yield* readParquetRows(file, columns);
  else yield* readJsonRows(file, unreadable);
}

export interface FileInfo {
  file: string;
  format: FileFormat;
  columns: { name: string; type: string }[];
  rows: number;
}

/** Schema and row count of a file (Parquet from its footer; Arrow and JSON by streaming through it). */
export async function describeFile(file: string): Promise<FileInfo> {
  const format = await detectFormat(file);
  if (format === 'parquet') return { file, format, ...(await parquetInfo(file)) };
  if (format === 'arrow') return { file, format, columns: await arrowColumns(file), rows: await countArrowRows(file) };
  const seen = new Map<string, Set<string>>();
  let rows = 0;
  for await (const b of readJsonRows(file)) {
    rows += b.rows.length;
    for (const r of b.rows) {
      for (const [k, v] of Object.entries(r)) {
        if (!seen.has(k)) seen.set(k, new Set());
        seen.get(k)!.add(v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v);
      }
    }
  }
  return { file, format, columns: [...seen].map(([name, t]) => ({ name, type: [...t].sort().join('|') })), rows };
}
