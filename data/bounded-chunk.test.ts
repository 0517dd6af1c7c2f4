import { describe, expect, it } from 'vitest';
import { tokenizerFromJson } from '../model/tokenizer.ts';
import { recordFormat, type ExampleOptions } from './example.ts';
import { buildChunk, type Chunk } from './tokenize-pool.ts';
import { timeLimitFor } from './time-limit.ts';
import { TEMPLATES } from './templates.ts';
import { CHATML_TEMPLATE, seedTokenizer } from './testing.ts';

const seed = seedTokenizer();
const options: ExampleOptions = { sequenceLen: 512, trainOnInputs: false, excessLength: 'drop' };

/** The seed tokenizer with a catastrophically backtracking Split pre-tokenizer: (a+)+$ on "aaa…!" takes 2^n steps. */
function redosTokenizer() {
  const pre = {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
  return tokenizerFromJson(
    { ...seed.origin.tokenizerJson, pre_tokenizer: pre },
    seed.origin.tokenizerConfig,
    null,
    '/models/evil',
  );
}

describe('a chunk of records is tokenized within a time limit', () => {
  it("stops a backtracking tokenizer.json regex, naming the row and the tokenizer's file", () => {
    const tok = redosTokenizer();
    const fmt = recordFormat({ kind: 'instruction', template: seedTemplate() }, tok);
    const chunk: Chunk = {
      records: [rec('fine'), rec(`${'a'.repeat(40)}!`)],
      format: [0, 0],
      where: ['d.jsonl row 0', 'd.jsonl row 1'],
    };
    const t0 = performance.now();
    const r = buildChunk(chunk, [fmt], tok, options, 300);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(r.error?.ft).toBe(true);
    expect(r.error?.message).toBe(
      'd.jsonl row 1: tokenizing did not finish in 0.3 s: a regex of /models/evil/tokenizer.json backtracks without end on this text',
    );
  });

  it('stops a chat template that loops for too long, naming the template', () => {
    const slow = '{% for i in range(90000) %}{% endfor %}' + CHATML_TEMPLATE;
    const fmt = recordFormat(
      { kind: 'chat', chatTemplate: slow, rolesToTrain: ['assistant'], templateFrom: 'the chat template of /models/m' },
      seed,
    );
    const chunk: Chunk = {
      records: [
        {
          kind: 'chat',
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: 'yo' },
          ],
        },
      ],
      format: [0],
      where: ['c.jsonl row 0'],
    };
    const r = buildChunk(chunk, [fmt], seed, options, 200);
    expect(r.error?.message).toBe('c.jsonl row 0: the chat template of /models/m did not finish rendering in 0.2 s');
  });

  it('gives ordinary chunks a limit of a minute and more for long text, and builds them as before', () => {
    const chunk: Chunk = { records: [rec('Name a color.')], format: [0], where: ['row 0'] };
    expect(timeLimitFor(chunk.records)).toBeGreaterThanOrEqual(60_000);
    expect(timeLimitFor([rec('x'.repeat(10_000_000))])).toBeGreaterThan(timeLimitFor(chunk.records) + 100_000);
    const fmt = recordFormat({ kind: 'instruction', template: seedTemplate() }, seed);
    const r = buildChunk(chunk, [fmt], seed, options);
    expect(r.error).toBeNull();
    expect(r.length[0]).toBeGreaterThan(3);
  });
});

function rec(instruction: string) {
  return { kind: 'instruction' as const, instruction, input: '', output: 'Blue.' };
}
function seedTemplate() {
  return TEMPLATES.alpaca;
}
