import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runFtOk } from '../test/run-ft.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-inspect-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const STORIES = path.resolve(import.meta.dirname, '../../shared/data/stories260K'); // context 512

it("ft data inspect --model without --sequence-len uses the model's context (max_position_embeddings)", async () => {
  const file = path.join(tmp, 'rows.jsonl');
  const row = (words: number) =>
    JSON.stringify({ instruction: 'Tell a story.', input: '', output: 'the cat sat on the mat '.repeat(words).trim() });
  writeFileSync(file, [row(2), row(200), row(3)].join('\n') + '\n'); // the 200-fold one is > 512 tokens
  const { stdout } = await runFtOk(['data', 'inspect', file, '--model', STORIES, '--examples', '1']);
  expect(stdout).toMatch(/; 1 longer than sequence_len 512\n/);
  expect(stdout).toContain(`=== ${file} line 1:`);
  const { stdout: given } = await runFtOk([
    'data',
    'inspect',
    file,
    '--model',
    STORIES,
    '--examples',
    '0',
    '--sequence-len',
    '2048',
  ]);
  expect(given).toMatch(/; 0 longer than sequence_len 2048\n/);
});
