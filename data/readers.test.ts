import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as arrow from 'apache-arrow';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FtError } from '../util/errors.ts';
import { countArrowRows, writeArrowStream } from './arrow.ts';
import { describeFile, detectFormat, readFileRows, resolveDataFiles } from './source.ts';
import { seedRows, type AlpacaRow } from './testing.ts';
import type { Row } from './types.ts';

let tmp: string;
const rows = seedRows();

async function readAll(file: string): Promise<Row[]> {
  const out: Row[] = [];
  for await (const b of readFileRows(file)) {
    expect(b.offset).toBe(out.length);
    out.push(...b.rows);
  }
  return out;
}

async function* inBatches<T>(items: T[], size: number): AsyncGenerator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

const pick = (r: Row): AlpacaRow => ({
  instruction: r.instruction as string,
  input: r.input as string,
  output: r.output as string,
});

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-data-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('the same seed rows from every format', () => {
  it('are read identically from JSONL, a JSON array, an Arrow stream, an Arrow file and Parquet', async () => {
    const jsonl = path.join(tmp, 'seed.jsonl');
    await fsp.writeFile(jsonl, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const json = path.join(tmp, 'seed.json');
    await fsp.writeFile(json, JSON.stringify(rows, null, 2));
    const stream = path.join(tmp, 'seed-stream.arrow');
    expect(await writeArrowStream(stream, inBatches(rows as unknown as Row[], 50))).toBe(rows.length);
    const file = path.join(tmp, 'seed-file.arrow');
    await fsp.writeFile(
      file,
      arrow.tableToIPC(
        arrow.tableFromArrays({
          instruction: rows.map((r) => r.instruction),
          input: rows.map((r) => r.input),
          output: rows.map((r) => r.output),
        }),
        'file',
      ),
    );
    const parquet = path.join(tmp, 'seed.parquet');
    parquetWriteFile({
      filename: parquet,
      columnData: (['instruction', 'input', 'output'] as const).map((name) => ({
        name,
        data: rows.map((r) => r[name]),
        type: 'STRING' as const,
      })),
      rowGroupSize: 64, // several row groups, read one at a time
    });

    expect(await detectFormat(stream)).toBe('arrow');
    expect(await detectFormat(file)).toBe('arrow');
    expect(await detectFormat(parquet)).toBe('parquet');
    expect(await detectFormat(jsonl)).toBe('json');
    for (const f of [jsonl, json, stream, file, parquet]) expect((await readAll(f)).map(pick), f).toEqual(rows);

    const info = await describeFile(parquet);
    expect(info.rows).toBe(rows.length);
    expect(info.columns.map((c) => c.name)).toEqual(['instruction', 'input', 'output']);
    expect((await describeFile(stream)).columns).toEqual([
      { name: 'instruction', type: 'Utf8' },
      { name: 'input', type: 'Utf8' },
      { name: 'output', type: 'Utf8' },
    ]);
  });
});

describe('Arrow round trips', () => {
  it('keeps nulls, numbers and nested chat messages through the stream format, batch by batch', async () => {
    const data: Row[] = [
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
        ],
        score: 1,
        note: null,
        ok: true,
      },
      { messages: [], score: 2, note: 'x', ok: false },
      { messages: [{ role: 'user', content: 'ünïcode ✓' }], score: 3, note: null, ok: null },
    ];
    const f = path.join(tmp, 'chat.arrow');
    await writeArrowStream(f, inBatches(data, 2));
    const back = await readAll(f);
    expect(back).toEqual(data);
    const reader = await arrow.RecordBatchReader.from(await fsp.readFile(f));
    expect(reader.isStream()).toBe(true);
    expect([...reader].map((b) => b.numRows)).toEqual([2, 1]);
  });

  it('refuses a later row with a column the schema does not have', async () => {
    await expect(
      writeArrowStream(path.join(tmp, 'x.arrow'), inBatches([{ a: 'x' }, { a: 'y', b: 'z' }] as Row[], 1)),
    ).rejects.toThrow(/row 2: column 'b' is not in the schema/);
  });

  it('writes nothing for an empty dataset', async () => {
    const f = path.join(tmp, 'empty-out.arrow');
    await expect(writeArrowStream(f, inBatches([], 1))).rejects.toThrow(/dataset is empty/);
    await expect(fsp.stat(f)).rejects.toThrow();
  });
});

describe('JSON streaming', () => {
  it('splits a JSON array across read chunks, with strings holding brackets, quotes and multi-byte characters', async () => {
    const many = Array.from({ length: 6000 }, (_, i) => ({
      instruction: `task ${i} {[}"]\\`,
      input: 'é'.repeat(i % 50),
      output: `] } , ${i}`,
    }));
    const f = path.join(tmp, 'many.json');
    await fsp.writeFile(f, JSON.stringify(many)); // > 1 MiB: several chunks
    expect(await readAll(f)).toEqual(many);
  });

  it('reads JSON Lines with blank lines and CRLF, and a .json file holding JSON Lines (as datasets to_json writes)', async () => {
    const f = path.join(tmp, 'lines.json');
    await fsp.writeFile(f, '{"a":"1"}\r\n\r\n{"a":"2"}\n{"a":"3"}');
    expect(await readAll(f)).toEqual([{ a: '1' }, { a: '2' }, { a: '3' }]);
  });

  it('names the line of invalid JSON', async () => {
    const f = path.join(tmp, 'bad.jsonl');
    await fsp.writeFile(f, '{"a":"1"}\n{"a": oops}\n');
    await expect(readAll(f)).rejects.toThrow(/bad\.jsonl line 2: invalid JSON/);
  });

  it('refuses bytes that are not UTF-8, naming the line (JSONL, JSON array) and the byte offset', async () => {
    const latin1 = Buffer.from('{"a":"caf\xe9"}', 'latin1'); // 'café' as Latin-1: 0xE9 is no UTF-8 sequence
    const f = path.join(tmp, 'latin1.jsonl');
    await fsp.writeFile(f, Buffer.concat([Buffer.from('{"a":"1"}\n\n'), latin1, Buffer.from('\n{"a":"4"}\n')]));
    await expect(readAll(f)).rejects.toThrow(/latin1\.jsonl line 3: not valid UTF-8 \(byte 0xe9 at byte offset 20\)/);
    const arr = path.join(tmp, 'latin1.json');
    await fsp.writeFile(arr, Buffer.concat([Buffer.from('[{"a":"1"},\n '), latin1, Buffer.from(']')]));
    await expect(readAll(arr)).rejects.toThrow(/latin1\.json line 2: not valid UTF-8 \(byte 0xe9 at byte offset 22\)/);
    // an overlong '/', a UTF-16 surrogate and a sequence cut by the end of the file are not UTF-8 either (RFC 3629)
    for (const [bytes, line] of [
      [[0xc0, 0xaf], 1],
      [[0xed, 0xa0, 0x80], 1],
      [[0xe2, 0x82], 2],
    ] as const) {
      const bad = path.join(tmp, 'ill-formed.jsonl');
      await fsp.writeFile(
        bad,
        Buffer.concat([Buffer.from(line === 1 ? '{"a":"' : '{"a":"ok"}\n{"a":"'), Buffer.from(bytes)]),
      );
      await expect(readAll(bad)).rejects.toThrow(new RegExp(`ill-formed\\.jsonl line ${line}: not valid UTF-8`));
    }
  });

  it('keeps U+FFFD written as UTF-8 and multi-byte characters split across read chunks', async () => {
    const f = path.join(tmp, 'split-chars.jsonl');
    const rowsIn = Array.from({ length: 3000 }, (_, i) => ({ a: `${'x'.repeat(i % 7)}\uFFFD€😀${i}` })); // > 1 MiB: chunk ends fall inside characters
    await fsp.writeFile(f, rowsIn.map((r) => JSON.stringify(r).padEnd(400)).join('\n'));
    expect(await readAll(f)).toEqual(rowsIn);
  });

  it('finds a bad byte past the first read chunk on the right line', async () => {
    const f = path.join(tmp, 'late-bad.jsonl');
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ a: `${i}`.padEnd(300, 'é') }));
    const at = 4321; // line 4322: several MiB in
    const body = Buffer.from(lines.map((l, i) => (i === at ? l.replace('é', '\u0000') : l)).join('\n'));
    const cut = body.indexOf(0, body.indexOf('"4321')); // the NUL stands where the bad byte goes
    body[cut] = 0xff;
    await fsp.writeFile(f, body);
    await expect(readAll(f)).rejects.toThrow(
      new RegExp(`late-bad\\.jsonl line ${at + 1}: not valid UTF-8 \\(byte 0xff at byte offset ${cut}\\)`),
    );
  });

  it('rejects a truncated JSON array and non-object rows', async () => {
    const f = path.join(tmp, 'cut.json');
    await fsp.writeFile(f, '[{"a":"1"},{"a":"2"');
    await expect(readAll(f)).rejects.toThrow(/ends before the closing \]/);
    await fsp.writeFile(f, '[{"a":"1"}, "x"]');
    await expect(readAll(f)).rejects.toThrow(/expected an object, found a string/);
  });
});

describe('corrupt files', () => {
  it('reports a truncated Arrow stream as corrupt, naming the file', async () => {
    const good = path.join(tmp, 'seed-stream.arrow');
    const bad = path.join(tmp, 'cut.arrow');
    const bytes = await fsp.readFile(good);
    await fsp.writeFile(bad, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const err = await readAll(bad).catch((e) => e);
    expect(err).toBeInstanceOf(FtError);
    expect(err.message).toMatch(/cut\.arrow: (corrupt Arrow data|not a readable Arrow)/);
  });

  it('refuses an Arrow stream or file cut at a record-batch boundary as truncated (no end-of-stream marker / no footer)', async () => {
    const all = arrow.tableFromArrays({ text: Array.from({ length: 3000 }, (_, i) => `row ${i}`) });
    const batches = [0, 1, 2].flatMap((k) => all.slice(k * 1000, (k + 1) * 1000).batches);
    const whole = arrow.tableToIPC(new arrow.Table(batches), 'stream');
    const firstTwo = arrow.tableToIPC(new arrow.Table(batches.slice(0, 2)), 'stream');
    const cut = firstTwo.subarray(0, firstTwo.length - 8); // schema + 2 batches, the 8-byte end-of-stream marker gone
    expect(Buffer.from(whole.subarray(0, cut.length)).equals(Buffer.from(cut))).toBe(true); // a prefix of the whole stream
    const streamCut = path.join(tmp, 'batch-cut-stream.arrow');
    await fsp.writeFile(streamCut, cut);
    await expect(readAll(streamCut)).rejects.toThrow(
      /batch-cut-stream\.arrow: truncated Arrow stream: it ends after row 2000 without the end-of-stream marker/,
    );
    await expect(countArrowRows(streamCut)).rejects.toThrow(/truncated Arrow stream/);
    const wholeFile = arrow.tableToIPC(new arrow.Table(batches), 'file');
    const fileReader = arrow.RecordBatchReader.from(wholeFile) as arrow.RecordBatchFileReader;
    fileReader.open();
    const third = fileReader.footer!.getRecordBatch(2)!; // the footer's block for batch 3: batch 2 ends where it starts
    const fileCut = path.join(tmp, 'batch-cut-file.arrow');
    await fsp.writeFile(fileCut, wholeFile.subarray(0, Number(third.offset)));
    await expect(readAll(fileCut)).rejects.toThrow(
      /batch-cut-file\.arrow: truncated Arrow file: it does not end with the Arrow file footer/,
    );
    const intact = path.join(tmp, 'batch-whole.arrow');
    await fsp.writeFile(intact, whole);
    expect((await readAll(intact)).length).toBe(3000);
    expect(await countArrowRows(intact)).toBe(3000);
  });

  it('reports a damaged Parquet file and a file with a data extension but no magic', async () => {
    const bytes = await fsp.readFile(path.join(tmp, 'seed.parquet'));
    const bad = path.join(tmp, 'bad.parquet');
    await fsp.writeFile(bad, Buffer.concat([bytes.subarray(0, 200), bytes.subarray(bytes.length - 200)]));
    const err = await readAll(bad).catch((e) => e);
    expect(err).toBeInstanceOf(FtError);
    expect(err.message).toMatch(/bad\.parquet: (not a readable Parquet file|corrupt Parquet data)/);
    const fake = path.join(tmp, 'fake.arrow');
    await fsp.writeFile(fake, 'instruction,output\n');
    await expect(readAll(fake)).rejects.toThrow(/fake\.arrow: not an Arrow IPC file/);
  });
});

describe('dataset paths', () => {
  it('refuses a save_to_disk state.json naming a data file outside its folder', async () => {
    const dir = path.join(tmp, 'escape', 'ds');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(tmp, 'secret.jsonl'), '{"instruction":"s","output":"secret"}\n');
    for (const filename of [
      '../../secret.jsonl',
      path.join(tmp, 'secret.jsonl'),
      '..',
      'sub/data.arrow',
      'sub\\data.arrow',
      '',
      7,
    ]) {
      await fsp.writeFile(path.join(dir, 'state.json'), JSON.stringify({ _data_files: [{ filename }] }));
      await expect(resolveDataFiles('escape/ds', tmp)).rejects.toThrow(
        /state\.json: _data_files\[0\]\.filename .* must be a file name in the dataset folder/,
      );
    }
  });

  it('expands a glob of shards in sorted order, and reads a save_to_disk folder through state.json', async () => {
    const dir = path.join(tmp, 'shards');
    await fsp.mkdir(dir);
    for (const i of [1, 0, 2])
      await writeArrowStream(
        path.join(dir, `data-0000${i}-of-00003.arrow`),
        inBatches([{ instruction: `s${i}`, output: 'o' }] as Row[], 1),
      );
    const files = await resolveDataFiles('shards/data-*-of-00003.arrow', tmp);
    expect(files.map((f) => path.basename(f))).toEqual([
      'data-00000-of-00003.arrow',
      'data-00001-of-00003.arrow',
      'data-00002-of-00003.arrow',
    ]);
    expect((await resolveDataFiles('**/data-0000[12]-*.arrow', tmp)).length).toBe(2);
    await fsp.writeFile(
      path.join(dir, 'state.json'),
      JSON.stringify({
        _data_files: [{ filename: 'data-00002-of-00003.arrow' }, { filename: 'data-00000-of-00003.arrow' }],
      }),
    );
    expect((await resolveDataFiles('shards', tmp)).map((f) => path.basename(f))).toEqual([
      'data-00002-of-00003.arrow',
      'data-00000-of-00003.arrow',
    ]);
    await expect(resolveDataFiles('shards/nothing-*.arrow', tmp)).rejects.toThrow(
      /no \.arrow\/\.json\/\.jsonl\/\.parquet files match/,
    );
    await expect(resolveDataFiles('missing.jsonl', tmp)).rejects.toThrow(/no such file/);
  });
});
