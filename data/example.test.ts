import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX } from '../model/types.ts';
import { buildExample, recordFormat, type ExampleOptions, type RecordFormat } from './example.ts';
import { customTemplate, renderInstruction, TEMPLATES } from './templates.ts';
import { CHATML_TEMPLATE, seedRows, seedTokenizer } from './testing.ts';
import type { ChatRecord, Example, InstructionRecord } from './types.ts';

const tok = seedTokenizer();
const alpaca: RecordFormat = { kind: 'instruction', template: TEMPLATES.alpaca };
const opts: ExampleOptions = { sequenceLen: 4096, trainOnInputs: false, excessLength: 'drop' };
const records: InstructionRecord[] = seedRows().map((r) => ({ kind: 'instruction', ...r }));

function build(r: InstructionRecord | ChatRecord, o: Partial<ExampleOptions> = {}, f: RecordFormat = alpaca): Example {
  const res = buildExample(r, f, tok, { ...opts, ...o }, 'test row');
  if (!res.ok) throw new Error(res.detail);
  return res.example;
}
const trained = (e: Example) => [...e.labels].filter((l) => l !== IGNORE_INDEX);

describe('alpaca templates', () => {
  it('render exactly as published in the Stanford Alpaca README', () => {
    const withInput = renderInstruction(
      { kind: 'instruction', instruction: 'Add.', input: '2 {and} 3', output: '5' },
      TEMPLATES.alpaca,
    );
    expect(withInput.prompt).toBe(
      'Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 {and} 3\n\n### Response:\n',
    );
    expect(withInput.response).toBe('5');
    const noInput = renderInstruction(
      { kind: 'instruction', instruction: 'Say hi {input}', input: '', output: 'hi' },
      TEMPLATES.alpaca,
    );
    expect(noInput.prompt).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi {input}\n\n### Response:\n',
    );
  });

  it('custom templates split prompt and response at {output} and check their fields', () => {
    const t = customTemplate(
      '[INST] {instruction}\n{input} [/INST] {output} [END]',
      '[INST] {instruction} [/INST] {output} [END]',
    );
    expect(renderInstruction({ kind: 'instruction', instruction: 'a', input: 'b', output: 'c' }, t)).toEqual({
      prompt: '[INST] a\nb [/INST] ',
      response: 'c [END]',
    });
    expect(renderInstruction({ kind: 'instruction', instruction: 'a', input: '', output: 'c' }, t)).toEqual({
      prompt: '[INST] a [/INST] ',
      response: 'c [END]',
    });
    expect(() => customTemplate('{instruction} {question}')).toThrow(/unknown field \{question\}/);
    expect(() => customTemplate('{input} only')).toThrow(/needs an \{instruction\}/);
  });
});

describe('masked labels on the seed tasks', () => {
  it('cover exactly the response plus eos, with [bos] prompt masked', () => {
    for (const r of records) {
      const e = build(r);
      const { prompt, response } = renderInstruction(r, TEMPLATES.alpaca);
      const promptIds = tok.encode(prompt, { addSpecialTokens: false });
      const responseIds = tok.encode(response, { addSpecialTokens: false });
      expect([...e.ids]).toEqual([tok.bosId, ...promptIds, ...responseIds, tok.eosId]);
      const n = 1 + promptIds.length;
      expect([...e.labels.subarray(0, n)].every((l) => l === IGNORE_INDEX)).toBe(true);
      expect([...e.labels.subarray(n)]).toEqual([...responseIds, tok.eosId]);
      expect(tok.decode(trained(e))).toBe(r.output + '</s>');
    }
  });

  it('train on every token but bos with train_on_inputs', () => {
    const e = build(records[1], { trainOnInputs: true });
    expect(e.labels[0]).toBe(IGNORE_INDEX);
    expect([...e.labels.subarray(1)]).toEqual([...e.ids.subarray(1)]);
  });
});

describe('sequence_len', () => {
  const long = records.reduce((a, b) => (build(a).ids.length > build(b).ids.length ? a : b));
  const L = build(long).ids.length;

  it('drops, truncates or refuses an example longer than sequence_len, as asked', () => {
    const dropped = buildExample(long, alpaca, tok, { ...opts, sequenceLen: L - 1 }, 'seed row 7');
    expect(dropped).toMatchObject({ ok: false, reason: 'too_long' });
    expect(() =>
      buildExample(long, alpaca, tok, { ...opts, sequenceLen: L - 1, excessLength: 'error' }, 'seed row 7'),
    ).toThrow(`seed row 7: ${L} tokens, longer than sequence_len ${L - 1}`);
    const cut = buildExample(long, alpaca, tok, { ...opts, sequenceLen: L - 5, excessLength: 'truncate' }, 'x');
    expect(cut.ok && cut.truncated && cut.example.ids.length === L - 5).toBe(true);
    if (cut.ok) expect([...cut.example.ids]).toEqual([...build(long).ids.subarray(0, L - 5)]);
    expect(build(long, { sequenceLen: L }).ids.length).toBe(L);
  });

  it('skips an example whose response is cut away entirely', () => {
    const res = buildExample(long, alpaca, tok, { ...opts, sequenceLen: 8, excessLength: 'truncate' }, 'seed row 7');
    expect(res).toMatchObject({ ok: false, reason: 'no_trainable_tokens' });
  });
});

describe('chat records through the tokenizer chat template', () => {
  const chat = recordFormat({ kind: 'chat', chatTemplate: CHATML_TEMPLATE, rolesToTrain: ['assistant'] }, tok);
  const convo: ChatRecord = {
    kind: 'chat',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Name a color.' },
      { role: 'assistant', content: 'Blue.' },
      { role: 'user', content: 'Another?' },
      { role: 'assistant', content: 'Red.' },
    ],
  };

  it('trains on the assistant turns (content and end-of-turn), not on their headers or the other turns', () => {
    const e = build(convo, {}, chat);
    const text = tok.decode([...e.ids]);
    expect(text).toBe(
      '<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|>\n',
    );
    // the trained runs, decoded separately
    const runs: string[] = [];
    let cur: number[] = [];
    e.labels.forEach((l) => {
      if (l !== IGNORE_INDEX) cur.push(l);
      else if (cur.length) runs.push(tok.decode(cur)), (cur = []);
    });
    if (cur.length) runs.push(tok.decode(cur));
    expect(runs).toEqual(['Blue.<|im_end|>\n', 'Red.<|im_end|>\n']);
  });

  it('does not double a bos the template renders itself', () => {
    const chatTemplate =
      "{{ bos_token }}{% for m in messages %}{{ m.role + ': ' + m.content + eos_token }}{% endfor %}";
    const e = build(convo, {}, recordFormat({ kind: 'chat', chatTemplate, rolesToTrain: ['assistant'] }, tok));
    expect(e.ids[0]).toBe(tok.bosId);
    expect(e.ids[1]).not.toBe(tok.bosId);
    expect(tok.decode(trained(e))).toBe('assistant: Blue.</s>assistant: Red.</s>');
  });
});
