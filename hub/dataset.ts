// A dataset by Hub id, chosen as the `datasets` library chooses files: `data_files` globs when given, else the
// README's `configs:` (config `name`, per-split patterns), else split names in file and folder names; a repo with
// no data files of its own (a loading script) is read from the Hub's Parquet conversion at refs/convert/parquet.
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { FtError } from '../util/errors.ts';
import { pathGlobRegex } from '../util/glob.ts';
import { downloadSnapshot, type HubOptions } from './download.ts';
import type { RemoteFile } from './transfer.ts';

/** The Hub fields of a recipe's `datasets:` entry. */
export interface HubDatasetRef {
  /** `org/name` */
  path: string;
  /** a config (README `configs:` config_name, or a folder of the Parquet conversion) */
  name?: string;
  /** default train */
  split?: string;
  /** globs of repo paths (`data/train-*.parquet`); wins over name and split */
  data_files?: string | string[];
  revision?: string;
}

const READABLE = ['.parquet', '.json', '.jsonl', '.arrow'];
const PARQUET_REVISION = 'refs/convert/parquet';

/** Split names and the synonyms `datasets` recognises in file and folder names. */
const SPLIT_KEYWORDS: Record<string, string[]> = {
  train: ['train', 'training'],
  validation: ['validation', 'valid', 'dev', 'val'],
  test: ['test', 'testing', 'eval', 'evaluation'],
};

/** Files of `split` by name: the keyword as a folder or a name part bounded by '-', '_', '.', ' ', digits or '/'. */
function splitFiles(files: RemoteFile[], split: string): { files: RemoteFile[]; splits: string[] } {
  const test = (kw: string, p: string) =>
    new RegExp(`(?:^|[-._ 0-9/])${kw}(?:[-._ 0-9/]|$)`, 'i').test(p.replace(/\.[^./]+$/, ''));
  const named = { ...SPLIT_KEYWORDS, ...(SPLIT_KEYWORDS[split] ? {} : { [split]: [split] }) };
  const splits = Object.keys(named).filter((s) => files.some((f) => named[s].some((kw) => test(kw, f.path))));
  // no split names at all: everything is train, as in `datasets`
  if (splits.length === 0) return { files: split === 'train' ? files : [], splits: ['train'] };
  return { files: files.filter((f) => named[split].some((kw) => test(kw, f.path))), splits };
}

type ConfigFiles = string | string[] | { split: string; path: string | string[] }[];
interface ReadmeConfig {
  config_name?: string;
  default?: boolean;
  data_files?: ConfigFiles;
}

/** The README's YAML front matter `configs:`, if any. */
function readmeConfigs(readme: string): ReadmeConfig[] {
  const m = /^---\r?\n([\s\S]*?)\r?\n---/.exec(readme);
  if (!m) return [];
  try {
    const meta = parseYaml(m[1]) as { configs?: ReadmeConfig[] } | null;
    return Array.isArray(meta?.configs) ? meta.configs : [];
  } catch {
    return [];
  }
}

function matching(files: RemoteFile[], patterns: string[]): RemoteFile[] {
  const res = patterns.map((p) => pathGlobRegex(p.replace(/^\.?\//, '')));
  return files.filter((f) => res.some((r) => r.test(f.path)));
}

function pickConfig<T extends string>(id: string, names: T[], name: string | undefined, preferred?: T): T {
  if (name !== undefined) {
    if (!names.includes(name as T))
      throw new FtError(`dataset ${id}: no config '${name}' (it has ${names.join(', ') || 'none'})`);
    return name as T;
  }
  const pick =
    preferred ?? (names.includes('default' as T) ? ('default' as T) : names.length === 1 ? names[0] : undefined);
  if (pick === undefined) throw new FtError(`dataset ${id}: has configs ${names.join(', ')}; set name to one of them`);
  return pick;
}

/** The data files of `ref` among a listing (`readText` reads the README); FtError naming what matched nothing. */
async function selectDataFiles(
  ref: HubDatasetRef,
  files: RemoteFile[],
  readText: (f: string) => Promise<string>,
  converted: boolean,
): Promise<RemoteFile[]> {
  const id = ref.path;
  const split = ref.split ?? 'train';
  const data = files.filter((f) => READABLE.includes(path.extname(f.path)));
  const readable = (picked: RemoteFile[], what: string) => {
    const ok = picked.filter((f) => READABLE.includes(path.extname(f.path)));
    if (ok.length === 0) {
      const shown = picked.length
        ? picked
            .slice(0, 3)
            .map((f) => f.path)
            .join(', ')
        : 'nothing';
      throw new FtError(`dataset ${id}: ${what} matches no .parquet/.json/.jsonl/.arrow file (matched ${shown})`);
    }
    return ok;
  };
  if (ref.data_files !== undefined) {
    const patterns = Array.isArray(ref.data_files) ? ref.data_files : [ref.data_files];
    return readable(matching(files, patterns), `data_files ${JSON.stringify(ref.data_files)}`);
  }
  if (converted) {
    // refs/convert/parquet: <config>/<split>/NNNN.parquet (or <config>/partial-<split>/..., <config>/<name>-<split>.parquet)
    const configs = [...new Set(data.filter((f) => f.path.includes('/')).map((f) => f.path.split('/')[0]))];
    const config = pickConfig(id, configs, ref.name);
    const inConfig = data
      .filter((f) => f.path.startsWith(`${config}/`))
      .map((f) => ({ ...f, path: f.path.slice(config.length + 1) }));
    const chosen = splitFiles(inConfig, split);
    if (chosen.files.length === 0)
      throw new FtError(
        `dataset ${id}: config '${config}' has no split '${split}' (it has ${chosen.splits.join(', ')})`,
      );
    const keep = new Set(chosen.files.map((f) => `${config}/${f.path}`));
    return data.filter((f) => keep.has(f.path));
  }
  const configs = files.some((f) => f.path === 'README.md') ? readmeConfigs(await readText('README.md')) : [];
  if (configs.length > 0) {
    const names = configs.map((c) => c.config_name ?? 'default');
    const config = configs[names.indexOf(pickConfig(id, names, ref.name, configs.find((c) => c.default)?.config_name))];
    const df = config.data_files ?? [];
    const patterns =
      typeof df === 'string' || (Array.isArray(df) && df.every((d) => typeof d === 'string'))
        ? split === 'train'
          ? [df as string | string[]].flat()
          : []
        : (df as { split: string; path: string | string[] }[])
            .filter((d) => d.split === split)
            .flatMap((d) => [d.path].flat());
    if (patterns.length === 0)
      throw new FtError(`dataset ${id}: config '${config.config_name ?? 'default'}' has no split '${split}'`);
    return readable(matching(files, patterns), `config '${config.config_name ?? 'default'}' split '${split}'`);
  }
  if (ref.name !== undefined)
    throw new FtError(`dataset ${id}: no config '${ref.name}' (its README declares no configs)`);
  const chosen = splitFiles(data, split);
  if (chosen.files.length === 0)
    throw new FtError(`dataset ${id}: no split '${split}' (it has ${chosen.splits.join(', ')})`);
  return chosen.files;
}

/**
 * The local files of a Hub dataset, downloaded into the cache as needed: the repo's own data files, or the
 * Parquet conversion when it has none.
 */
export async function downloadDataset(ref: HubDatasetRef, opts: HubOptions = {}): Promise<string[]> {
  const base = { ...opts, repo: ref.path, repoType: 'dataset' as const };
  let converted = false;
  const snap = await downloadSnapshot({
    ...base,
    revision: ref.revision,
    select: async (files, readText) => {
      if (ref.data_files === undefined && !files.some((f) => READABLE.includes(path.extname(f.path)))) {
        converted = true;
        return [];
      }
      return selectDataFiles(ref, files, readText, false);
    },
  });
  if (!converted) return snap.files.map((f) => path.join(snap.dir, f));
  (opts.log ?? (() => {}))(
    `ft: dataset ${ref.path} has no data files of its own (a loading script?); using the Hub's Parquet conversion (${PARQUET_REVISION})`,
  );
  const parquet = await downloadSnapshot({
    ...base,
    revision: PARQUET_REVISION,
    select: (files, readText) => selectDataFiles(ref, files, readText, true),
  });
  return parquet.files.map((f) => path.join(parquet.dir, f));
}

/**
 * A recipe's datasets with every Hub entry (a path that is not absolute) given `data_files`: its local files. Local
 * entries, and Hub entries already resolved (data_files all absolute paths), are left as they are.
 */
export async function resolveHubDatasets<D extends HubDatasetRef>(datasets: D[], opts: HubOptions = {}): Promise<D[]> {
  const resolved = (d: D) =>
    path.isAbsolute(d.path) || (Array.isArray(d.data_files) && d.data_files.every((f) => path.isAbsolute(f)));
  const out: D[] = [];
  for (const d of datasets) out.push(resolved(d) ? d : { ...d, data_files: await downloadDataset(d, opts) });
  return out;
}
