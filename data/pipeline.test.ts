import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainBatch } from '../model/types.ts';
import { writeArrowStream } from './arrow.ts';
import { formatStats, loadDataset, newStats, type Dataset, type DataStats, type Part } from './pipeline.ts';
import { DataRecipeSchema, type DataRecipe } from './spec.ts';
import { SEED_TASKS, seedRows, seedTokenizer } from './testing.ts';
import type { Row } from './types.ts';

const tok = seedTokenizer();
const rows = seedRows();
let tmp: string;

const recipe = (over: Record<string, unknown>): DataRecipe =>
  DataRecipeSchema.parse({ datasets: [{ path: 'seed.jsonl' }], sequence_len: 1024, ...over });
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
async function hashes(r: DataRecipe, part: Part, epoch = 0): Promise<string[]> {
  const ds = await loadDataset(r, tok, tmp);
  return (await all(ds.records(part, epoch))).map((x) => x.hash);
}
const plain = (b: TrainBatch) => ({
  B: b.B,
  T: b.T,
  ids: [...b.ids],
  segments: [...b.segments],
  positions: [...b.positions],
  labels: [...b.labels],
});

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-pipe-'));
  await fsp.writeFile(path.join(tmp, 'seed.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
  await fsp.writeFile(
    path.join(tmp, 'seed-reversed.jsonl'),
    [...rows]
      .reverse()
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
  await writeArrowStream(
    path.join(tmp, 'seed.arrow'),
    (async function* () {
      yield rows as unknown as Row[];
    })(),
  );
  parquetWriteFile({
    filename: path.join(tmp, 'seed.parquet'),
    columnData: (['instruction', 'input', 'output'] as const).map((name) => ({
      name,
      data: rows.map((r) => r[name]),
      type: 'STRING' as const,
    })),
  });
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('the seed tasks', () => {
  it('flattens seed_tasks.jsonl instances into one record per instance', async () => {
    const ds = await loadDataset(recipe({ datasets: [{ path: SEED_TASKS }], shuffle_buffer_size: 0 }), tok);
    const recs = await all(ds.records('validation')); // validation part without a split = nothing; train part in file order
    expect(recs).toEqual([]);
    const train = (await all(ds.records('train'))).map((r) => r.record);
    expect(train).toEqual(rows.map((r) => ({ kind: 'instruction', ...r })));
  });

  it('gives the same batches from JSONL, Arrow and Parquet of the same rows', async () => {
    const runs = [];
    for (const p of ['seed.jsonl', 'seed.arrow', 'seed.parquet']) {
      const ds = await loadDataset(
        recipe({
          datasets: [{ path: p }],
          micro_batch_size: 4,
          sample_packing: true,
          sequence_len: 512,
          val_set_size: 0.1,
        }),
        tok,
        tmp,
      );
      const stats = newStats();
      // JSONL names line n, Arrow and Parquet row n: the same record here (no blank lines)
      runs.push({
        batches: (await all(ds.batches({ stats }))).map(plain),
        stats: { ...stats, notes: stats.notes.map((n) => n.replace(/^seed\.\w+ (line|row)/, 'seed record')) },
      });
    }
    expect(runs[0].batches.length).toBeGreaterThan(3);
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
    expect(runs[0].stats.rows).toBe(rows.length);
    expect(runs[0].stats.examples + runs[0].stats.otherPart + runs[0].stats.skipped.too_long).toBe(rows.length);
  });
});

describe('validation split', () => {
  it('is the same rows for a seed whatever the file order, disjoint from train, and moves with the seed', async () => {
    const r = recipe({ val_set_size: 0.2, seed: 7 });
    const val = await hashes(r, 'validation');
    const train = await hashes(r, 'train');
    expect(val.length).toBeGreaterThan(rows.length * 0.1);
    expect(val.length).toBeLessThan(rows.length * 0.3);
    expect(val.filter((h) => train.includes(h))).toEqual([]);
    expect(val.length + train.length).toBe(rows.length);
    const reversed = await hashes(
      recipe({ val_set_size: 0.2, seed: 7, datasets: [{ path: 'seed-reversed.jsonl' }] }),
      'validation',
    );
    expect([...reversed].sort()).toEqual([...val].sort());
    expect(await hashes(r, 'validation')).toEqual(val);
    const other = await hashes(recipe({ val_set_size: 0.2, seed: 8 }), 'validation');
    expect(other.sort()).not.toEqual([...val].sort());
  });

  it('holds out exactly a count of rows, the same ones in any order', async () => {
    const val = await hashes(recipe({ val_set_size: 17 }), 'validation');
    expect(val.length).toBe(17);
    const reversed = await hashes(
      recipe({ val_set_size: 17, datasets: [{ path: 'seed-reversed.jsonl' }] }),
      'validation',
    );
    expect(reversed.sort()).toEqual(val.sort());
  });
});

describe('order and resume', () => {
  const r = recipe({ micro_batch_size: 2, shuffle_buffer_size: 32, seed: 3 });

  it('shuffles reproducibly per epoch, each epoch a different order of the same rows', async () => {
    const e0 = await hashes(r, 'train', 0);
    expect(await hashes(r, 'train', 0)).toEqual(e0);
    const e1 = await hashes(r, 'train', 1);
    expect(e1).not.toEqual(e0);
    expect([...e1].sort()).toEqual([...e0].sort());
    const fileOrder = await hashes(recipe({ shuffle_buffer_size: 0 }), 'train');
    expect(e0).not.toEqual(fileOrder);
  });

  it('resumes at a batch index with exactly the batches that followed it', async () => {
    const ds = await loadDataset(r, tok, tmp);
    const full = (await all(ds.batches({ epoch: 1 }))).map(plain);
    const rest = (await all(ds.batches({ epoch: 1, startBatch: 30 }))).map(plain);
    expect(rest).toEqual(full.slice(30));
  });
});

describe('bad input', () => {
  const write = async (name: string, lines: unknown[]) =>
    fsp.writeFile(path.join(tmp, name), lines.map((l) => JSON.stringify(l)).join('\n'));

  it('names the columns found when a required column is missing, and accepts a column mapping', async () => {
    await write('qa.jsonl', [{ question: 'q', answer: 'a' }]);
    const ds = await loadDataset(recipe({ datasets: [{ path: 'qa.jsonl' }] }), tok, tmp);
    await expect(all(ds.batches())).rejects.toThrow(
      "qa.jsonl line 1: missing column 'instruction' (columns found: question, answer)",
    );
    const mapped = await loadDataset(
      recipe({ datasets: [{ path: 'qa.jsonl', field_instruction: 'question', field_output: 'answer' }] }),
      tok,
      tmp,
    );
    expect((await all(mapped.batches())).length).toBe(1);
  });

  it('stops at a null field naming the row, or skips and counts it when on_bad_row is skip', async () => {
    await write('nulls.jsonl', [rows[0], { ...rows[1], output: null }, rows[2], { ...rows[3], instruction: 5 }]);
    const strict = await loadDataset(recipe({ datasets: [{ path: 'nulls.jsonl' }] }), tok, tmp);
    await expect(all(strict.batches())).rejects.toThrow(
      "nulls.jsonl line 2: field 'output' must be a string, got null",
    );
    const lenient = await loadDataset(recipe({ datasets: [{ path: 'nulls.jsonl' }], on_bad_row: 'skip' }), tok, tmp);
    const stats = newStats();
    expect((await all(lenient.batches({ stats }))).length).toBe(2);
    expect([stats.rows, stats.badRows, stats.examples]).toEqual([4, 2, 2]);
    expect(stats.notes[1]).toMatch(/nulls\.jsonl line 4: field 'instruction' must be a string, got number/);
    expect(formatStats(stats, 1024)).toMatch(/2 bad rows skipped/);
  });

  it('stops at a line that is not UTF-8 naming it, or skips and counts it when on_bad_row is skip', async () => {
    const good = (r: object) => Buffer.from(`${JSON.stringify(r)}\n`);
    const latin1 = Buffer.from(`${JSON.stringify({ ...rows[1], output: 'caf\xe9' })}\n`, 'latin1');
    await fsp.writeFile(path.join(tmp, 'latin1.jsonl'), Buffer.concat([good(rows[0]), latin1, good(rows[2])]));
    const strict = await loadDataset(recipe({ datasets: [{ path: 'latin1.jsonl' }] }), tok, tmp);
    await expect(all(strict.batches())).rejects.toThrow(
      /latin1\.jsonl line 2: not valid UTF-8 \(byte 0xe9 at byte offset \d+\)/,
    );
    const lenient = await loadDataset(recipe({ datasets: [{ path: 'latin1.jsonl' }], on_bad_row: 'skip' }), tok, tmp);
    const stats = newStats();
    expect((await all(lenient.batches({ stats }))).length).toBe(2);
    expect([stats.rows, stats.badRows, stats.examples]).toEqual([3, 1, 2]);
    expect(stats.notes[0]).toMatch(/latin1\.jsonl line 2: not valid UTF-8/);
  });

  it('names a record by its line (JSON, JSONL) or row (Arrow, Parquet), counted from 1, in every format', async () => {
    const good = { instruction: 'Say hi.', input: '', output: 'hi' };
    const bad = { instruction: 'Say hi.', input: '', output: null };
    const fail = async (file: string) => {
      const ds = await loadDataset(recipe({ datasets: [{ path: file }] }), tok, tmp);
      return all(ds.batches()).then(
        () => 'no error',
        (e: Error) => e.message,
      );
    };
    // JSONL: blank lines count as lines
    await fsp.writeFile(path.join(tmp, 'n.jsonl'), ['', JSON.stringify(good), '', JSON.stringify(bad)].join('\n'));
    expect(await fail('n.jsonl')).toBe("n.jsonl line 4: field 'output' must be a string, got null");
    // a pretty-printed JSON array (as alpaca_data.json): the line the record starts on
    await fsp.writeFile(path.join(tmp, 'n.json'), '\n' + JSON.stringify([good, good, bad], null, 2));
    expect(await fail('n.json')).toBe("n.json line 13: field 'output' must be a string, got null");
    expect(('\n' + JSON.stringify([good, good, bad], null, 2)).split('\n')[12]).toBe('  {'); // line 13 of the file opens the third record
    // Arrow and Parquet: row numbers
    await writeArrowStream(
      path.join(tmp, 'n.arrow'),
      (async function* () {
        yield [good, good] as Row[];
        yield [good, bad] as Row[];
      })(),
    );
    expect(await fail('n.arrow')).toBe("n.arrow row 4: field 'output' must be a string, got null");
    parquetWriteFile({
      filename: path.join(tmp, 'n.parquet'),
      columnData: (['instruction', 'input', 'output'] as const).map((name) => ({
        name,
        data: [good, bad, good].map((r) => r[name]),
        type: 'STRING' as const,
      })),
    });
    expect(await fail('n.parquet')).toBe("n.parquet row 2: field 'output' must be a string, got null");
  });

  it('refuses an empty dataset, and a dataset whose every row is dropped, saying why', async () => {
    await fsp.writeFile(path.join(tmp, 'empty.jsonl'), '\n');
    const empty = await loadDataset(recipe({ datasets: [{ path: 'empty.jsonl' }] }), tok, tmp);
    await expect(all(empty.batches())).rejects.toThrow(/empty\.jsonl: no train examples \(0 rows -> 0 examples/);
    const short = await loadDataset(recipe({ sequence_len: 16 }), tok, tmp);
    await expect(all(short.batches())).rejects.toThrow(
      /175 dropped as longer than sequence_len 16\); e\.g\. seed\.jsonl line \d+: \d+ tokens > sequence_len 16/,
    );
  });

  it('counts dropped long rows, or stops at the first one when excess_length_strategy is error', async () => {
    const stats = newStats();
    const ds = await loadDataset(recipe({ sequence_len: 128 }), tok, tmp);
    await all(ds.batches({ stats }));
    expect(stats.skipped.too_long).toBeGreaterThan(0);
    expect(stats.examples + stats.skipped.too_long).toBe(rows.length);
    const strict = await loadDataset(
      recipe({ sequence_len: 128, excess_length_strategy: 'error', shuffle_buffer_size: 0 }),
      tok,
      tmp,
    );
    await expect(all(strict.batches())).rejects.toThrow(
      /seed\.jsonl line \d+: \d+ tokens, longer than sequence_len 128/,
    );
  });

  it('needs a chat template for chat data', async () => {
    await write('chat.jsonl', [
      {
        conversations: [
          { from: 'human', value: 'hi' },
          { from: 'gpt', value: 'hello' },
        ],
      },
    ]);
    const noTemplate = { ...tok, chatTemplate: null };
    await expect(
      loadDataset(recipe({ datasets: [{ path: 'chat.jsonl', type: 'chat' }] }), noTemplate, tmp),
    ).rejects.toThrow(/type chat needs a chat template/);
    const ds = await loadDataset(recipe({ datasets: [{ path: 'chat.jsonl', type: 'chat' }] }), tok, tmp);
    const [b] = await all(ds.batches());
    expect(tok.decode([...b.ids])).toBe('<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n');
  });
});

describe('tokenizing on worker threads', () => {
  // 1050 instruction rows (the seed tasks six times over) and 175 conversations: chunks mix both formats, and
  // at sequence_len 160 dropped rows sit among the examples
  const many = Array.from({ length: 6 }, (_, k) =>
    rows.map((r) => ({ ...r, instruction: `${k}. ${r.instruction}` })),
  ).flat();
  const chats = rows.map((r) => ({
    messages: [
      { role: 'user', content: `${r.instruction}\n${r.input}` },
      { role: 'assistant', content: r.output },
    ],
  }));
  const datasets = [{ path: 'many.jsonl' }, { path: 'chats.jsonl', type: 'chat' }];
  const r = recipe({ datasets, sequence_len: 160, val_set_size: 0.1, dataset_processes: 2 });
  beforeAll(async () => {
    await fsp.writeFile(path.join(tmp, 'many.jsonl'), many.map((x) => JSON.stringify(x)).join('\n'));
    await fsp.writeFile(path.join(tmp, 'chats.jsonl'), chats.map((x) => JSON.stringify(x)).join('\n'));
  });
  const pass = async (ds: Dataset, stats = newStats()) => {
    const examples = (await all(ds.examples('train', 1, stats))).map((e) => ({
      ids: [...e.ids],
      labels: [...e.labels],
      where: e.where,
    }));
    return { examples, stats: { ...stats, workerRows: 0 }, workerRows: stats.workerRows };
  };
  /** Passes over `ds` until one ran (partly) on the workers, which start during the first; each must match `check`. */
  async function untilOnWorkers(ds: Dataset, check: (stats: DataStats) => Promise<void>): Promise<void> {
    try {
      for (let i = 0; i < 100; i++) {
        const stats = newStats();
        await check(stats);
        if (stats.workerRows > 0) return;
      }
      throw new Error('the tokenizer workers never took a chunk');
    } finally {
      await ds.close();
    }
  }

  it('yields the same examples, skips and notes as tokenizing in-process', async () => {
    const inProcess = await pass(await loadDataset({ ...r, dataset_processes: 1 }, tok, tmp, { parallelAfter: 0 }));
    expect(inProcess.workerRows).toBe(0);
    expect(inProcess.stats.skipped.too_long).toBeGreaterThan(0);
    expect(inProcess.examples.filter((e) => e.where.startsWith('chats.jsonl')).length).toBeGreaterThan(0);
    const ds = await loadDataset(r, tok, tmp, { parallelAfter: 0 });
    await untilOnWorkers(ds, async (stats) =>
      expect(await pass(ds, stats)).toEqual({ ...inProcess, workerRows: stats.workerRows }),
    );
    expect(formatStats({ ...newStats(), rows: 600, examples: 600, workerRows: 512 }, 160)).toMatch(
      /; 512 rows tokenized on worker threads$/,
    );
  });

  it('stops at the same row as in-process when excess_length_strategy is error', async () => {
    const strict = { ...r, excess_length_strategy: 'error' as const };
    const error = (ds: Dataset, stats?: DataStats) =>
      pass(ds, stats).then(
        () => 'no error',
        (e: Error) => e.message,
      );
    const inProcess = await error(await loadDataset({ ...strict, dataset_processes: 1 }, tok, tmp));
    expect(inProcess).toMatch(/line \d+: \d+ tokens, longer than sequence_len 160/);
    const ds = await loadDataset(strict, tok, tmp, { parallelAfter: 0 });
    await untilOnWorkers(ds, async (stats) => expect(await error(ds, stats)).toBe(inProcess));
  });

  it('fails the pass with the reason when a worker cannot build the tokenizer', async () => {
    const broken = { ...tok, origin: { ...tok.origin, tokenizerJson: { model: { type: 'NoSuchModel' } } } };
    const ds = await loadDataset(r, broken, tmp, { parallelAfter: 0 });
    try {
      let message = '';
      for (let i = 0; i < 100 && !message; i++)
        message = await pass(ds).then(
          () => '',
          (e: Error) => e.message,
        );
      expect(message).toMatch(
        /^tokenizer worker failed: seed-bpe: tokenizer\.json cannot be used .*\(dataset_processes: 1 tokenizes in-process\)$/,
      );
    } finally {
      await ds.close();
    }
  });
});
