import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildExample } from '../data/example.ts';
import { rowHash } from '../data/split.ts';
import { SEED_TASKS, seedTokenizer } from '../data/testing.ts';
import { TEMPLATES } from '../data/templates.ts';
import { tokenizerFromJson } from '../model/tokenizer.ts';
import { IGNORE_INDEX } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { entryFor, readEvalItems } from './items.ts';
import { checkOverlap } from './overlap.ts';

const tok = seedTokenizer();
const tmp = mkdtempSync(path.join(tmpdir(), 'ft-eval-items-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
};
const opts = { sequenceLen: 512 };

describe('readEvalItems', () => {
  it('skips and counts rows whose prompt alone fills sequence_len, and refuses when none is left', async () => {
    const long = { instruction: `Summarize: ${'many words here '.repeat(60)}`, input: '', output: 'Short.' };
    const short = { instruction: 'Name a primary color.', input: '', output: 'Red.' };
    const p = file('long.jsonl', [long, short, long].map((r) => JSON.stringify(r)).join('\n'));
    const lines: string[] = [];
    const items = await readEvalItems({ entries: [entryFor(p)] }, tok, { sequenceLen: 128, log: (l) => lines.push(l) });
    expect(items.map((i) => i.reference)).toEqual(['Red.']);
    expect(lines).toEqual([
      'ft: eval: 2 rows skipped: the prompt alone fills sequence_len 128, leaving no response token to score',
    ]);
    const onlyLong = file('only-long.jsonl', JSON.stringify(long));
    await expect(readEvalItems({ entries: [entryFor(onlyLong)] }, tok, { sequenceLen: 128 })).rejects.toThrow(
      /no rows left to evaluate \(1 row skipped: the prompt alone fills sequence_len 128/,
    );
  });

  it('prompt ids are the masked prefix of the training example, the reference is the output column', async () => {
    const rows = [
      { instruction: 'Name a primary color.', input: '', output: 'Red.', task: 'colors' },
      { instruction: 'Add the numbers.', input: '2 and 3', output: '5', category: 'math' },
    ];
    const items = await readEvalItems(
      { entries: [entryFor(file('a.jsonl', rows.map((r) => JSON.stringify(r)).join('\n')))] },
      tok,
      opts,
    );
    expect(items.map((i) => [i.index, i.task, i.reference])).toEqual([
      [0, 'colors', 'Red.'],
      [1, 'math', '5'],
    ]);
    const record = { kind: 'instruction' as const, instruction: 'Add the numbers.', input: '2 and 3', output: '5' };
    const built = buildExample(
      record,
      { kind: 'instruction', template: TEMPLATES.alpaca },
      tok,
      { sequenceLen: 512, trainOnInputs: false, excessLength: 'error' },
      'x',
    );
    if (!built.ok) throw new Error('example not built');
    const firstTrained = built.example.labels.findIndex((l) => l !== IGNORE_INDEX);
    expect(items[1].promptIds).toEqual(Array.from(built.example.ids.subarray(0, firstTrained)));
    expect(items[1].example).toEqual(built.example);
    expect(items[1].prompt).toBe(
      TEMPLATES.alpaca.withInput.replace('{instruction}', 'Add the numbers.').replace('{input}', '2 and 3'),
    );
    expect(items[1].hash).toBe(rowHash(record));
    expect(items[1].where).toMatch(/a\.jsonl line 2$/);
  });

  it('flattens the Alpaca seed tasks over their instances, tasks named by the name column, up to max_samples', async () => {
    const items = await readEvalItems({ entries: [entryFor(SEED_TASKS)], maxSamples: 7 }, tok, opts);
    expect(items).toHaveLength(7);
    expect(items[0].task).toBe('breakfast_suggestion');
    expect(items.every((i) => i.task !== null && i.promptIds[0] === tok.bosId)).toBe(true);
  });

  it('keeps only the rows a filter accepts (a validation split)', async () => {
    const all = await readEvalItems({ entries: [entryFor(SEED_TASKS)], maxSamples: 20 }, tok, opts);
    const wanted = new Set(all.filter((_, i) => i % 3 === 0).map((i) => i.hash));
    const kept = await readEvalItems(
      { entries: [entryFor(SEED_TASKS)], keep: (h) => wanted.has(h), maxSamples: 4 },
      tok,
      opts,
    );
    expect(kept.map((i) => i.hash)).toEqual(
      all
        .filter((_, i) => i % 3 === 0)
        .slice(0, 4)
        .map((i) => i.hash),
    );
  });

  it('a conversation is prompted up to its last assistant turn, which is the reference', async () => {
    const conv = {
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: 'Name a fruit.' },
        { role: 'assistant', content: 'Apple.' },
      ],
    };
    const [item] = await readEvalItems(
      { entries: [entryFor(file('c.jsonl', JSON.stringify(conv)), 'chat')] },
      tok,
      opts,
    );
    expect(item.reference).toBe('Apple.');
    expect(item.prompt).toBe(
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(tok.decode(item.promptIds, { skipSpecialTokens: false }).endsWith('<|im_start|>assistant\n')).toBe(true);
  });
});

describe('bad eval data', () => {
  it('a missing reference column names the file, row and the columns found', async () => {
    const p = file('noout.jsonl', JSON.stringify({ instruction: 'x', answer: 'y' }));
    await expect(readEvalItems({ entries: [entryFor(p)] }, tok, opts)).rejects.toThrow(
      /noout\.jsonl line 1: missing column 'output' \(columns found: instruction, answer\)/,
    );
  });

  it('an empty file is an error', async () => {
    const p = file('empty.jsonl', '\n');
    await expect(readEvalItems({ entries: [entryFor(p)] }, tok, opts)).rejects.toThrow(/empty\.jsonl: no rows/);
  });

  it('a conversation not ending with the assistant has no reference', async () => {
    const p = file('open.jsonl', JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }] }));
    await expect(readEvalItems({ entries: [entryFor(p, 'chat')] }, tok, opts)).rejects.toThrow(
      /must end with an assistant message/,
    );
  });

  it('an unknown --data-type is named', () => {
    expect(() => entryFor('x.jsonl', 'vicuna')).toThrow(FtError);
  });
});

describe('checkOverlap', () => {
  const items = [
    { index: 0, where: 'e.jsonl row 0', hash: 'a' },
    { index: 1, where: 'e.jsonl row 1', hash: 'b' },
    { index: 2, where: 'e.jsonl row 2', hash: 'c' },
  ];
  it('refuses with the count and one example, or only reports with allow', () => {
    expect(() => checkOverlap(items, new Set(['b', 'c']), { allow: false, trainedOn: 'r.yaml' })).toThrow(
      '2 of 3 eval rows also appear in the training rows of r.yaml (e.g. e.jsonl row 1)',
    );
    const r = checkOverlap(items, new Set(['c']), { allow: true, trainedOn: 'r.yaml' });
    expect(r.overlapping).toEqual([{ index: 2, where: 'e.jsonl row 2' }]);
    expect(r.message).toMatch(/^1 of 3 eval rows/);
    expect(checkOverlap(items, new Set(['z']), { allow: false, trainedOn: 'r.yaml' }).message).toBeNull();
  });

  it("stops a prompt the tokenizer's regex cannot finish on, naming the row and tokenizer.json", async () => {
    const pre = {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    };
    const evil = tokenizerFromJson(
      { ...tok.origin.tokenizerJson, pre_tokenizer: pre },
      tok.origin.tokenizerConfig,
      null,
      '/models/evil',
    );
    const p = file(
      'redos.jsonl',
      [
        { instruction: 'fine', input: '', output: 'ok' },
        { instruction: `${'a'.repeat(40)}!`, input: '', output: 'ok' },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n'),
    );
    await expect(
      readEvalItems({ entries: [entryFor(p)] }, evil, { sequenceLen: 128, timeLimitMs: 300 }),
    ).rejects.toThrow(
      /redos\.jsonl line 2: tokenizing did not finish in 0\.3 s: a regex of \/models\/evil\/tokenizer\.json backtracks without end on this text$/,
    );
  });
});
