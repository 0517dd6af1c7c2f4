// Repos for the local Hub server (test/hub-server.ts): a tiny Llama model folder as repo files, Alpaca rows as
// Parquet shards, as tatsu-lab/alpaca and TinyLlama repos hold them on huggingface.co.
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { initModel } from '../model/init.ts';
import type { HubServer } from './hub-server.ts';
import type { AlpacaRow } from './train-fixtures.ts';

/** Every file of a folder (recursively) as repo path -> bytes. */
export function folderFiles(dir: string, rel = ''): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, folderFiles(dir, r));
    else out[r] = readFileSync(path.join(dir, r));
  }
  return out;
}

/**
 * ft's tiny preset with its tokenizer trained on `rows` (nothing read outside the repo), as model repo files; a
 * vocabulary of 300, which a few rows fill (a larger one would leave model token ids the tokenizer cannot decode).
 */
export async function tinyModelRepo(dir: string, rows: AlpacaRow[], seed = 0): Promise<Record<string, Buffer>> {
  await initModel(dir, {
    seed,
    initStd: 0.15,
    vocabSize: 300,
    corpus: rows.flatMap((r) => [r.instruction, r.input, r.output]),
  });
  return folderFiles(dir);
}

/** Alpaca rows as a Parquet file with tatsu-lab/alpaca's columns (instruction, input, output, text). */
export function alpacaParquet(rows: AlpacaRow[]): Buffer {
  const text = rows.map(
    (r) => `### Instruction:\n${r.instruction}\n\n### Input:\n${r.input}\n\n### Response:\n${r.output}`,
  );
  const columnData = [
    ...(['instruction', 'input', 'output'] as const).map((name) => ({
      name,
      data: rows.map((r) => r[name]),
      type: 'STRING' as const,
    })),
    { name: 'text', data: text, type: 'STRING' as const },
  ];
  return Buffer.from(parquetWriteBuffer({ columnData }));
}

/** Distinct short Alpaca rows (an instruction with an input, some without) from a fixed recipe, no randomness needed. */
export function alpacaRows(n: number): AlpacaRow[] {
  const words = ['red', 'green', 'blue', 'black', 'white', 'gold', 'gray', 'pink'];
  return Array.from({ length: n }, (_, i) => {
    const a = words[i % words.length];
    const b = words[Math.floor(i / words.length) % words.length];
    return i % 3 === 0
      ? { instruction: `Name a colour like ${a}.`, input: '', output: b }
      : { instruction: 'Join the two colours.', input: `${a} ${b}`, output: `${a}-${b}` };
  });
}

export const DEMO_MODEL = 'TinyLlama/TinyLlama-1.1B-Chat-v1.0';
export const DEMO_DATASET = 'tatsu-lab/alpaca';

/**
 * Seeds `hub` with what recipes/alpaca.yaml asks for, small: ft's tiny Llama (built in `workDir`) under the
 * TinyLlama id, and `rows` Alpaca rows as tatsu-lab/alpaca's one Parquet shard (the real file name).
 */
export async function seedAlpacaDemo(hub: HubServer, workDir: string, rows = alpacaRows(64)): Promise<void> {
  const model = await tinyModelRepo(path.join(workDir, 'tiny-llama'), rows);
  hub.seed('model', DEMO_MODEL, {
    ...model,
    'README.md': '---\nlicense: apache-2.0\n---\n# a tiny stand-in for TinyLlama\n',
  });
  hub.seed('dataset', DEMO_DATASET, {
    'README.md':
      '---\nlicense: cc-by-nc-4.0\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n# a few Alpaca-style rows\n',
    'data/train-00000-of-00001-a09b74b3ef9c3b56.parquet': alpacaParquet(rows),
  });
}
