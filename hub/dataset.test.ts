// Hub datasets against the local Hub: the repo's Parquet shards by split, JSON files by README configs, data_files
// globs, and a script-only repo read from refs/convert/parquet; rows read back with ft's own readers.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readFileRows } from '../data/source.ts';
import { alpacaParquet, alpacaRows } from '../test/hub-fixtures.ts';
import { startHubServer, type HubServer } from '../test/hub-server.ts';
import { downloadDataset, resolveHubDatasets, type HubDatasetRef } from './dataset.ts';
import type { HubOptions } from './download.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-hubds-'));
let hub: HubServer;
let cache: string;
let n = 0;
const opts = (extra: HubOptions = {}): HubOptions => ({
  env: {},
  endpoint: hub.url,
  cacheDir: cache,
  token: null,
  retries: 0,
  retryBaseMs: 1,
  ...extra,
});
const rows = alpacaRows(30);
const jsonl = (rs: object[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: Error) => e.message,
  );
const rel = (files: string[]) =>
  files.map((f) => f.split(`${path.sep}snapshots${path.sep}`)[1].split(path.sep).slice(1).join('/'));
async function countRows(files: string[]): Promise<number> {
  let k = 0;
  for (const f of files) for await (const b of readFileRows(f, ['instruction'])) k += b.rows.length;
  return k;
}

beforeAll(async () => {
  hub = await startHubServer([]);
  // tatsu-lab/alpaca's layout: Parquet shards under data/, split in the name
  hub.seed('dataset', 'org/shards', {
    'README.md': '---\nlicense: cc-by-nc-4.0\n---\n# shards\n',
    'data/train-00000-of-00002.parquet': alpacaParquet(rows.slice(0, 12)),
    'data/train-00001-of-00002.parquet': alpacaParquet(rows.slice(12, 20)),
    'data/test-00000-of-00001.parquet': alpacaParquet(rows.slice(20)),
  });
  // JSON files picked through the README's configs
  hub.seed('dataset', 'org/json', {
    'README.md': [
      '---',
      'configs:',
      '- config_name: default',
      '  data_files:',
      '  - split: train',
      '    path: "train/*.jsonl"',
      '  - split: validation',
      '    path: dev.json',
      '- config_name: small',
      '  data_files: "train/part-0.jsonl"',
      '---',
    ].join('\n'),
    'train/part-0.jsonl': jsonl(rows.slice(0, 5)),
    'train/part-1.jsonl': jsonl(rows.slice(5, 9)),
    'dev.json': JSON.stringify(rows.slice(9, 12)),
  });
  // only a loading script: the Hub's Parquet conversion lives on refs/convert/parquet
  hub.seed('dataset', 'org/scripted', { 'README.md': '# scripted\n', 'scripted.py': 'import datasets\n' });
  hub.seed(
    'dataset',
    'org/scripted',
    {
      'default/train/0000.parquet': alpacaParquet(rows.slice(0, 7)),
      'default/test/0000.parquet': alpacaParquet(rows.slice(7, 10)),
    },
    { branch: 'refs/convert/parquet' },
  );
});
afterAll(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  cache = path.join(tmp, `cache-${++n}`);
  hub.log.length = 0;
});

describe('Hub datasets as the datasets library picks their files', () => {
  it('Parquet shards: split train is both train shards, split test the test shard; rows read back', async () => {
    const train = await downloadDataset({ path: 'org/shards' }, opts());
    expect(rel(train)).toEqual(['data/train-00000-of-00002.parquet', 'data/train-00001-of-00002.parquet']);
    expect(train[0].startsWith(path.join(cache, 'datasets--org--shards', 'snapshots'))).toBe(true);
    expect(await countRows(train)).toBe(20);
    const test = await downloadDataset({ path: 'org/shards', split: 'test' }, opts());
    expect(rel(test)).toEqual(['data/test-00000-of-00001.parquet']);
    expect(await countRows(test)).toBe(10);
    expect(await errorOf(downloadDataset({ path: 'org/shards', split: 'validation' }, opts()))).toBe(
      "dataset org/shards: no split 'validation' (it has train, test)",
    );
  });

  it('JSON / JSONL through README configs, a named config, and data_files globs', async () => {
    expect(rel(await downloadDataset({ path: 'org/json' }, opts()))).toEqual([
      'train/part-0.jsonl',
      'train/part-1.jsonl',
    ]);
    const dev = await downloadDataset({ path: 'org/json', split: 'validation' }, opts());
    expect(rel(dev)).toEqual(['dev.json']);
    expect(await countRows(dev)).toBe(3);
    expect(rel(await downloadDataset({ path: 'org/json', name: 'small' }, opts()))).toEqual(['train/part-0.jsonl']);
    expect(
      rel(await downloadDataset({ path: 'org/json', data_files: ['train/*-1.jsonl', 'dev.json'] }, opts())),
    ).toEqual(['dev.json', 'train/part-1.jsonl']);
    expect(await errorOf(downloadDataset({ path: 'org/json', name: 'large' }, opts()))).toBe(
      "dataset org/json: no config 'large' (it has default, small)",
    );
    expect(await errorOf(downloadDataset({ path: 'org/json', data_files: 'nothing/*.parquet' }, opts()))).toBe(
      'dataset org/json: data_files "nothing/*.parquet" matches no .parquet/.json/.jsonl/.arrow file (matched nothing)',
    );
  });

  it('a repo with only a loading script is read from refs/convert/parquet, cached under refs/refs/convert/parquet', async () => {
    const lines: string[] = [];
    const train = await downloadDataset({ path: 'org/scripted' }, opts({ log: (l) => lines.push(l) }));
    expect(rel(train)).toEqual(['default/train/0000.parquet']);
    expect(await countRows(train)).toBe(7);
    expect(lines).toContain(
      "ft: dataset org/scripted has no data files of its own (a loading script?); using the Hub's Parquet conversion (refs/convert/parquet)",
    );
    const head = hub.repos.get('datasets/org/scripted')!.heads.get('refs/convert/parquet')!;
    expect(
      readFileSync(path.join(cache, 'datasets--org--scripted', 'refs', 'refs', 'convert', 'parquet'), 'utf8'),
    ).toBe(head);
    expect(hub.log.some((r) => r.path === '/api/datasets/org/scripted/revision/refs%2Fconvert%2Fparquet')).toBe(true);
    expect(rel(await downloadDataset({ path: 'org/scripted', split: 'test' }, opts()))).toEqual([
      'default/test/0000.parquet',
    ]);
    // and from the cache alone
    const offline = await downloadDataset({ path: 'org/scripted' }, opts({ env: { HF_HUB_OFFLINE: '1' } }));
    expect(offline).toEqual(train);
  });

  it('a recipe entry by Hub id gets data_files (its local files); a local entry is left alone', async () => {
    const entries: (HubDatasetRef & { type: string })[] = [
      { path: 'org/shards', type: 'alpaca' },
      { path: '/data/x.jsonl', type: 'alpaca' },
    ];
    const [hubEntry, local] = await resolveHubDatasets(entries, opts());
    expect(hubEntry.type).toBe('alpaca');
    expect(rel(hubEntry.data_files as string[])).toEqual([
      'data/train-00000-of-00002.parquet',
      'data/train-00001-of-00002.parquet',
    ]);
    expect(local).toEqual({ path: '/data/x.jsonl', type: 'alpaca' });
  });
});
