import { spawn, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainBatch } from '../model/types.ts';
import { loadDataset, newStats, type Dataset, type DataStats, type Part } from './pipeline.ts';
import { prepareDataset, type PrepareOptions } from './prepared.ts';
import { DataRecipeSchema, type DataRecipe } from './spec.ts';
import { seedRows, seedTokenizer } from './testing.ts';
import type { DataTokenizer } from './types.ts';

// The streaming pipeline (data/pipeline.ts, itself checked against the published Alpaca templates, HF tokenizers and
// chat templates) is the reference: prepared data must give the same examples, counts, stats, notes and errors.
const tok = seedTokenizer();
const rows = seedRows();
let tmp: string;
let store: string;

const recipe = (over: Record<string, unknown>): DataRecipe =>
  DataRecipeSchema.parse({ datasets: [{ path: 'seed.jsonl' }], sequence_len: 1024, dataset_processes: 1, ...over });
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
const plain = (b: TrainBatch) => ({
  B: b.B,
  T: b.T,
  ids: [...b.ids],
  segments: [...b.segments],
  positions: [...b.positions],
  labels: [...b.labels],
});
/** The examples a batch holds (ids with their shifted labels), one string each: batches of any order compare as multisets. */
const segmentsOf = (b: TrainBatch) => {
  const out: string[] = [];
  for (let r = 0; r < b.B; r++) {
    for (let t = 0; t < b.T; ) {
      const s = b.segments[r * b.T + t];
      let e = t;
      while (e < b.T && b.segments[r * b.T + e] === s) e++;
      if (s !== 0)
        out.push(`${b.ids.subarray(r * b.T + t, r * b.T + e)}|${b.labels.subarray(r * b.T + t, r * b.T + e)}`);
      t = e;
    }
  }
  return out;
};
const exampleKeys = async (ds: Dataset, part: Part, epoch = 0) =>
  (await all(ds.examples(part, epoch))).map((e) => `${e.where}|${e.ids}|${e.labels}`);
const noWorkers = (s: DataStats) => ({ ...s, workerRows: 0 });

async function prepared(r: DataRecipe, t: DataTokenizer = tok, opts: Partial<PrepareOptions> = {}) {
  const lines: string[] = [];
  const ds = await prepareDataset(r, t, tmp, { dir: store, log: (l) => lines.push(l), ...opts });
  return { ds, lines };
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-prepared-'));
  store = path.join(tmp, 'last_run_prepared');
  await fsp.writeFile(path.join(tmp, 'seed.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('prepared data equals the streaming pipeline', () => {
  for (const packing of [false, true]) {
    it(`gives the same batches, batch counts and stats in file order (sample_packing ${packing})`, async () => {
      // sequence_len 160 drops the long rows: the stats carry skip notes
      const r = recipe({
        sequence_len: 160,
        val_set_size: 0.1,
        shuffle_buffer_size: 0,
        micro_batch_size: 4,
        sample_packing: packing,
      });
      const streamed = await loadDataset(r, tok, tmp);
      const { ds } = await prepared(r);
      for (const part of ['train', 'validation'] as Part[]) {
        const [s1, s2] = [newStats(), newStats()];
        const want = (await all(streamed.batches({ part, stats: s1 }))).map(plain);
        expect((await all(ds.batches({ part, stats: s2 }))).map(plain)).toEqual(want);
        expect(s2).toEqual(s1);
        expect(s1.skipped.too_long).toBeGreaterThan(0);
        const c = newStats();
        expect(await ds.batchCount(part, c)).toBe(want.length);
        expect(c).toEqual(s1);
      }
      expect(await exampleKeys(ds, 'validation')).toEqual(await exampleKeys(streamed, 'validation'));
      await ds.close();
    });
  }

  it('gives the same examples and stats for mixed instruction and chat datasets tokenized on worker threads', async () => {
    // enough rows that the worker threads are up before the build's pass ends
    const many = Array.from({ length: 24 }, (_, k) =>
      rows.map((r) => ({ ...r, instruction: `${k}. ${r.instruction}` })),
    ).flat();
    const chats = rows.map((r) => ({
      messages: [
        { role: 'user', content: `${r.instruction}\n${r.input}` },
        { role: 'assistant', content: r.output },
      ],
    }));
    await fsp.writeFile(path.join(tmp, 'many.jsonl'), many.map((x) => JSON.stringify(x)).join('\n'));
    await fsp.writeFile(path.join(tmp, 'chats.jsonl'), chats.map((x) => JSON.stringify(x)).join('\n'));
    const r = recipe({
      datasets: [{ path: 'many.jsonl' }, { path: 'chats.jsonl', type: 'chat' }],
      sequence_len: 160,
      val_set_size: 0.1,
      dataset_processes: 2,
      sample_packing: true,
      micro_batch_size: 4,
    });
    const { ds, lines } = await prepared(r, tok, { parallelAfter: 0 });
    expect(lines.at(-1)).toMatch(/rows tokenized on worker threads$/);
    const streamed = await loadDataset({ ...r, dataset_processes: 1 }, tok, tmp);
    // validation: file order on both sides, so the very same batches
    const [v1, v2] = [newStats(), newStats()];
    expect((await all(ds.batches({ part: 'validation', stats: v2 }))).map(plain)).toEqual(
      (await all(streamed.batches({ part: 'validation', stats: v1 }))).map(plain),
    );
    expect(v2).toEqual(noWorkers(v1));
    // train: a different order (an example-level permutation against shards + a bounded buffer), the same multiset
    const [t1, t2] = [newStats(), newStats()];
    const want = await all(streamed.examples('train', 1, t1));
    const key = (e: { where: string; ids: Int32Array; labels: Int32Array }) => `${e.where}|${e.ids}|${e.labels}`;
    expect((await all(ds.examples('train', 1, t2))).map(key).sort()).toEqual(want.map(key).sort());
    expect({ ...t2, notes: [] }).toEqual({ ...noWorkers(t1), notes: [] });
    expect(t2.notes.length).toBe(t1.notes.length);
    expect(want.filter((e) => e.where.startsWith('chats.jsonl')).length).toBeGreaterThan(0);
    // packed batches hold each example once, as segments (ids with labels shifted by one)
    const segments = (await all(ds.batches({ epoch: 1 }))).flatMap(segmentsOf).sort();
    expect(segments).toEqual(want.map((e) => `${e.ids}|${[...e.labels.subarray(1), -100]}`).sort());
    expect((await all(ds.hashes('train'))).sort()).toEqual((await all(streamed.hashes('train'))).sort());
    await ds.close();
  });

  it("fails with the streaming pipeline's errors: no examples, an over-long row, a bad row", async () => {
    const error = (p: Promise<unknown>) =>
      p.then(
        () => 'no error',
        (e: Error) => e.message,
      );
    for (const over of [{ sequence_len: 16 }, { sequence_len: 128, excess_length_strategy: 'error' }]) {
      const r = recipe({ ...over, shuffle_buffer_size: 0 });
      const want = await error(all((await loadDataset(r, tok, tmp)).batches()));
      expect(want).not.toBe('no error');
      const count = async () => {
        const { ds } = await prepared(r);
        return ds.batchCount('train').finally(() => ds.close());
      };
      expect(await error(count())).toBe(want);
    }
    await fsp.writeFile(
      path.join(tmp, 'nulls.jsonl'),
      ['{"instruction":"a","output":"b"}', '{"instruction":"c","output":null}'].join('\n'),
    );
    const r = recipe({ datasets: [{ path: 'nulls.jsonl' }] });
    const want = await error(all((await loadDataset(r, tok, tmp)).batches()));
    expect(want).toMatch(/nulls\.jsonl line 2: field 'output' must be a string, got null/);
    const before = await fsp.readdir(store);
    expect(await error(prepared(r))).toBe(want);
    expect(await fsp.readdir(store)).toEqual(before); // the failed build left no folder behind, complete or not
  });

  it('holds out the same rows: a count split from the stored hashes', async () => {
    const r = recipe({ val_set_size: 17 });
    const streamed = await loadDataset(r, tok, tmp);
    const { ds } = await prepared(r);
    const every = await all(streamed.hashes('train'));
    const held = await all(streamed.hashes('validation'));
    expect(held.length).toBe(17);
    for (const h of [...every, ...held]) expect(ds.split.isValidation(h)).toBe(streamed.split.isValidation(h));
    await ds.close();
  });
});

describe('order and resume', () => {
  const r = recipe({
    micro_batch_size: 2,
    sample_packing: true,
    sequence_len: 512,
    excess_length_strategy: 'truncate',
    seed: 3,
  });

  it('shuffles the examples reproducibly per epoch and resumes at a batch with exactly the batches that followed', async () => {
    const { ds } = await prepared(r);
    const e1 = (await all(ds.batches({ epoch: 1 }))).map(plain);
    expect((await all(ds.batches({ epoch: 1 }))).map(plain)).toEqual(e1);
    const e2 = await exampleKeys(ds, 'train', 2);
    expect(e2).not.toEqual(await exampleKeys(ds, 'train', 1));
    expect([...e2].sort()).toEqual((await exampleKeys(ds, 'train', 1)).sort());
    expect((await all(ds.batches({ epoch: 1, startBatch: 7 }))).map(plain)).toEqual(e1.slice(7));
    await ds.close();
    const { ds: again, lines } = await prepared(r);
    expect(lines[0]).toMatch(/^ft: data: reusing /);
    expect((await all(again.batches({ epoch: 1, startBatch: 7 }))).map(plain)).toEqual(e1.slice(7));
    await again.close();
  });
});

describe('reuse and invalidation', () => {
  const r = recipe({ val_set_size: 0.1, sequence_len: 256 });
  const folders = async () => (await fsp.readdir(store)).filter((f) => !f.startsWith('.'));

  it('reuses an unchanged folder and rebuilds when a data file, the tokenizer or a data key changes', async () => {
    const first = await prepared(r);
    const built = first.lines[0];
    expect(built).toMatch(/^ft: data: preparing .* \((no prepared data yet|.*)\)$/);
    const name = built.match(/preparing (\S+)/)![1];
    // keys that only change the order or the batching reuse it
    for (const over of [
      {},
      { micro_batch_size: 3, sample_packing: true, shuffle_buffer_size: 5, dataset_processes: 2 },
    ]) {
      expect((await prepared({ ...r, ...over })).lines).toEqual([
        expect.stringMatching(new RegExp(`^ft: data: reusing ${name} \\(\\d+ train \\+ \\d+ validation examples`)),
      ]);
    }
    const file = path.join(tmp, 'seed.jsonl');
    const later = new Date(Date.now() + 5000);
    await fsp.utimes(file, later, later);
    expect((await prepared(r)).lines[0]).toBe(
      `ft: data: preparing ${name} (${file} changed (size or modification time))`,
    );
    expect((await prepared(r)).lines[0]).toMatch(/^ft: data: reusing /);
    const otherTok = {
      ...tok,
      origin: { ...tok.origin, tokenizerConfig: { ...tok.origin.tokenizerConfig, eos_token: '<|im_end|>' } },
    };
    expect((await prepared(r, otherTok)).lines[0]).toMatch(/^ft: data: preparing .* \(no prepared data yet\)$/);
    expect((await prepared({ ...r, sequence_len: 128 })).lines[0]).toMatch(
      /^ft: data: preparing .* \(no prepared data yet\)$/,
    );
    expect((await prepared({ ...r, datasets: [{ ...r.datasets[0], type: 'chatml' }] })).lines[0]).toMatch(
      /\(no prepared data yet\)$/,
    );
    expect((await folders()).length).toBeGreaterThanOrEqual(4);
    // the eval asks without building: up to date -> prepared, otherwise it streams
    expect((await prepared({ ...r, sequence_len: 64 }, tok, { build: false })).lines[0]).toMatch(
      /^ft: data: streaming, no up-to-date prepared data in .* \(no prepared data yet\)$/,
    );
  });

  it('never takes a build killed midway as prepared, and removes what it left', async () => {
    // a real build in another process, SIGKILLed once its temp folder holds data
    await fsp.writeFile(
      path.join(tmp, 'big.jsonl'),
      Array.from({ length: 30 }, () => rows.map((x) => JSON.stringify(x)).join('\n')).join('\n'),
    );
    const big = recipe({ datasets: [{ path: 'big.jsonl' }], val_set_size: 0.1 });
    const script = path.join(tmp, 'build.mts');
    const here = path.dirname(fileURLToPath(import.meta.url));
    await fsp.writeFile(
      script,
      [
        `import { prepareDataset } from ${JSON.stringify(path.join(here, 'prepared.ts'))};`,
        `import { seedTokenizer } from ${JSON.stringify(path.join(here, 'testing.ts'))};`,
        `await prepareDataset(${JSON.stringify(big)}, seedTokenizer(), ${JSON.stringify(tmp)}, { dir: ${JSON.stringify(store)} });`,
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise((r) => child.once('exit', r));
    const temp = async () => (await fsp.readdir(store).catch(() => [] as string[])).find((f) => f.includes('.tmp-'));
    let killedIn: string | undefined;
    for (let i = 0; i < 3000 && !killedIn && child.exitCode === null; i++) {
      const t = await temp();
      if (t && (await fsp.stat(path.join(store, t, 'train.tokens')).catch(() => null))?.size) {
        child.kill('SIGKILL');
        killedIn = t;
      } else await new Promise((r) => setTimeout(r, 10));
    }
    await exited;
    expect(killedIn, `the build ended (exit code ${child.exitCode}) before it could be killed`).toBeDefined();
    expect(await temp()).toBe(killedIn); // the killed build's folder is left over, under its temp name only
    const { ds, lines } = await prepared(big);
    expect(lines[0]).toMatch(/\(no prepared data yet\)$/);
    expect(await temp()).toBeUndefined();
    expect(await ds.batchCount('train')).toBeGreaterThan(0);
    await ds.close();
  });

  it('never takes a half-written folder as prepared: truncated files are rebuilt, abandoned builds removed', async () => {
    const { lines } = await prepared(r);
    const name = lines[0].match(/(?:reusing|preparing) (\S+)/)![1];
    const tokens = path.join(name, 'train.tokens');
    await fsp.truncate(tokens, 100);
    expect((await prepared(r)).lines[0]).toMatch(
      /^ft: data: preparing .* \(incomplete: train\.tokens is 100 bytes, expected \d+ bytes\)$/,
    );
    await fsp.rm(path.join(name, 'header.json'));
    expect((await prepared(r)).lines[0]).toMatch(/\(incomplete: no header\.json\)$/);
    // a build killed midway leaves only its temp folder (named after a process that is gone)
    const dead = spawnSync('true').pid!;
    const abandoned = path.join(store, `.${path.basename(name)}.tmp-${dead}-0-x`);
    await fsp.mkdir(abandoned);
    await fsp.writeFile(path.join(abandoned, 'train.tokens'), 'partial');
    await fsp.rm(name, { recursive: true });
    const rebuilt = await prepared(r);
    expect(rebuilt.lines[0]).toMatch(/\(no prepared data yet\)$/);
    await expect(fsp.stat(abandoned)).rejects.toThrow();
    expect((await all(rebuilt.ds.batches())).length).toBeGreaterThan(0);
    await rebuilt.ds.close();
  });
});
