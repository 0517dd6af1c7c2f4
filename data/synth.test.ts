import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as arrow from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readArrowRows } from './arrow.ts';
import { resolveDataFiles } from './source.ts';
import { SYNTH_TASKS, synthCorpus, synthSplits, type SynthRow } from './synth.ts';
import { createSynthDatasets, writeSynthDataset } from './synth-write.ts';
import { runFtOk } from '../test/run-ft.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-synth-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

const byTask = (rows: SynthRow[], task: string) => rows.filter((r) => r.task === task);

describe('synthSplits', () => {
  const { train, test } = synthSplits({ rows: 3000, heldOut: 240, seed: 0 });

  it('is deterministic: the same seed gives the same rows, another seed other rows', () => {
    expect(synthSplits({ rows: 3000, heldOut: 240, seed: 0 })).toEqual({ train, test });
    const other = synthSplits({ rows: 3000, heldOut: 240, seed: 1 });
    expect(other.train.filter((r, i) => r.input === train[i].input).length).toBeLessThan(300);
  });

  it('mixes every task evenly, each with its own instruction', () => {
    expect(train).toHaveLength(3000);
    expect(test).toHaveLength(240);
    for (const t of SYNTH_TASKS) {
      expect(byTask(train, t.name)).toHaveLength(500);
      expect(byTask(test, t.name)).toHaveLength(40);
      expect(new Set(byTask(train, t.name).map((r) => r.instruction))).toEqual(new Set([t.instruction]));
    }
  });

  it('holds out inputs that no training row of the same task has, and repeats none', () => {
    const trained = new Set(train.map((r) => `${r.task}\0${r.input}`));
    expect(trained.size).toBe(train.length);
    for (const r of test) expect(trained.has(`${r.task}\0${r.input}`), r.input).toBe(false);
  });

  it('answers every row correctly (checked by JSON.parse, Intl date formatting, regex counting)', () => {
    for (const r of [...train, ...test]) {
      switch (r.task) {
        case 'reverse_words':
          expect(r.output.split(' ')).toEqual(r.input.split(' ').reverse());
          break;
        case 'sort_numbers': {
          const nums = r.input.split(', ').map(Number);
          expect(r.output).toBe(nums.sort((a, b) => a - b).join(', '));
          break;
        }
        case 'date_format':
          // en-GB writes DD/MM/YYYY
          expect(r.output).toBe(
            new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC' }).format(new Date(`${r.input}T00:00:00Z`)),
          );
          break;
        case 'count_capitals':
          expect(Number(r.output)).toBe((r.input.match(/[A-Z]/g) ?? []).length);
          break;
        case 'count_words':
          expect(Number(r.output)).toBe(r.input.split(' ').length);
          break;
        case 'list_to_json':
          expect(JSON.parse(r.output)).toEqual(r.input.split(', '));
          break;
        default:
          throw new Error(`unknown task ${r.task}`);
      }
    }
  });

  it('gives a tokenizer corpus in the Alpaca template', () => {
    const corpus = synthCorpus(10);
    expect(corpus).toHaveLength(20);
    expect(corpus[0]).toMatch(
      /^Below is an instruction that describes a task, paired with an input .*### Response:\n/s,
    );
    expect(corpus[1]).toMatch(/^Below is an instruction that describes a task\. Write .*### Response:\n$/s);
  });
});

describe('writeSynthDataset: a datasets DatasetDict.save_to_disk folder', () => {
  const opts = { rows: 1500, heldOut: 100, seed: 7 };
  let dir: string;
  beforeAll(async () => {
    dir = path.join(tmp, 'synth');
    expect(await writeSynthDataset(dir, opts)).toEqual({ train: 1500, test: 100 });
  });

  it('lays out dataset_dict.json and per split the Arrow stream, dataset_info.json and state.json', async () => {
    expect(JSON.parse(await fsp.readFile(path.join(dir, 'dataset_dict.json'), 'utf8'))).toEqual({
      splits: ['train', 'test'],
    });
    for (const split of ['train', 'test']) {
      expect((await fsp.readdir(path.join(dir, split))).sort()).toEqual([
        'data-00000-of-00001.arrow',
        'dataset_info.json',
        'state.json',
      ]);
      const state = JSON.parse(await fsp.readFile(path.join(dir, split, 'state.json'), 'utf8'));
      expect(state).toMatchObject({
        _data_files: [{ filename: 'data-00000-of-00001.arrow' }],
        _split: split,
        _format_type: null,
      });
      expect(state._fingerprint).toMatch(/^[0-9a-f]{16}$/);
      const info = JSON.parse(await fsp.readFile(path.join(dir, split, 'dataset_info.json'), 'utf8'));
      expect(info.features).toEqual(
        Object.fromEntries(
          ['task', 'instruction', 'input', 'output'].map((c) => [c, { dtype: 'string', _type: 'Value' }]),
        ),
      );
    }
  });

  it('writes an Arrow IPC stream (not the file format) that apache-arrow reads back to the generated rows', async () => {
    const bytes = await fsp.readFile(path.join(dir, 'train', 'data-00000-of-00001.arrow'));
    expect(bytes.readUInt32LE(0)).toBe(0xffffffff); // stream continuation marker, no ARROW1 magic
    const reader = arrow.RecordBatchReader.from(bytes);
    expect(reader.isStream()).toBe(true);
    const table = arrow.tableFromIPC(bytes);
    expect(table.batches.length).toBe(2); // 1000-row record batches, as datasets' writer_batch_size
    expect(table.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual([
      'task:Utf8',
      'instruction:Utf8',
      'input:Utf8',
      'output:Utf8',
    ]);
    expect(table.toArray().map((r) => r.toJSON())).toEqual(synthSplits(opts).train);
  });

  it("is what ft's readers stream: the folder resolves to its train split, the test split by its path", async () => {
    expect(await resolveDataFiles(dir)).toEqual([path.join(dir, 'train', 'data-00000-of-00001.arrow')]);
    const rows = [];
    for await (const b of readArrowRows((await resolveDataFiles(path.join(dir, 'test')))[0])) rows.push(...b.rows);
    expect(rows).toEqual(synthSplits(opts).test);
  });

  it('createSynthDatasets writes a missing one and leaves an existing folder alone', async () => {
    const target = path.join(tmp, 'auto');
    const logs: string[] = [];
    const entry = { path: target, synth: { rows: 20, held_out: 5, seed: 0 } };
    await createSynthDatasets([entry, { path: path.join(tmp, 'not-synth.jsonl') }], (l) => logs.push(l));
    expect(logs).toEqual([`ft: creating dataset ${target} (ft data synth: 20 rows + 5 held out, seed 0)`]);
    const before = await fsp.stat(path.join(target, 'train', 'state.json'));
    await createSynthDatasets([entry], (l) => logs.push(l));
    expect(logs).toHaveLength(1);
    expect((await fsp.stat(path.join(target, 'train', 'state.json'))).mtimeMs).toBe(before.mtimeMs);
  });
});

describe('ft data synth', () => {
  it('writes the folder from the command line, byte-identical for the same seed', async () => {
    const out = path.join(tmp, 'cli');
    const { stdout } = await runFtOk([
      'data',
      'synth',
      '--out',
      out,
      '--rows',
      '1500',
      '--held-out',
      '100',
      '--seed',
      '7',
    ]);
    expect(stdout).toBe(
      `wrote ${out}: train 1500 rows, test 100 rows (Arrow IPC stream, datasets save_to_disk layout)\n`,
    );
    for (const f of ['train/data-00000-of-00001.arrow', 'test/data-00000-of-00001.arrow', 'train/state.json']) {
      expect(
        Buffer.compare(await fsp.readFile(path.join(out, f)), await fsp.readFile(path.join(tmp, 'synth', f))),
        f,
      ).toBe(0);
    }
    await expect(runFtOk(['data', 'synth', '--out', out, '--rows', '0'])).rejects.toThrow(
      /--rows must be an integer >= 1, got 0/,
    );
  });
});
