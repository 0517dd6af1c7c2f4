import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatInspection } from '../cli/data.ts';
import { describeFile } from './source.ts';
import { convertToArrow, inspectDataset } from './inspect.ts';
import { DataRecipeSchema } from './spec.ts';
import { SEED_TASKS, seedRows, seedTokenizer } from './testing.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-inspect-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('ft data convert and inspect', () => {
  it('converts seed_tasks.jsonl to an Arrow stream keeping the nested instances, and inspects it', async () => {
    const out = path.join(tmp, 'seed.arrow');
    expect(await convertToArrow(SEED_TASKS, out)).toMatchObject({ rows: 175 });
    const info = await describeFile(out);
    expect(info.columns.find((c) => c.name === 'instances')?.type).toBe('List<Struct<{input:Utf8, output:Utf8}>>');

    const tok = seedTokenizer();
    const recipe = DataRecipeSchema.parse({ datasets: [{ path: out }], sequence_len: 256 });
    const r = await inspectDataset(recipe, tok, tmp, 2);
    expect(r.stats.examples).toBe(seedRows().length);
    expect(r.lengths.counts.reduce((a, b) => a + b, 0)).toBe(r.stats.examples);
    expect(r.examples.map((e) => e.where)).toEqual(['seed.arrow row 1', 'seed.arrow row 2']);
    const e = r.examples[1];
    expect(e.runs.map((x) => x.trained)).toEqual([false, true]);
    expect(e.runs[1].text).toBe(seedRows()[1].output + '</s>');
    expect(e.runs[0].tokens + e.runs[1].tokens).toBe(e.tokens);
    const text = formatInspection(r, 256);
    expect(text).toContain('seed.arrow: arrow, 175 rows');
    expect(text).toMatch(new RegExp(`${r.lengths.overSequenceLen} longer than sequence_len 256`));
    expect(r.lengths.overSequenceLen).toBeGreaterThan(0);
  });
});
