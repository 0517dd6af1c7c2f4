import { Template } from '@huggingface/jinja';
import { describe, expect, it } from 'vitest';
import { FtError } from '../util/errors.ts';
import { chatRenderer, MAX_RANGE_ITEMS } from './chat.ts';
import { CHATML_TEMPLATE, seedTokenizer } from './testing.ts';
import type { ChatMessage } from './types.ts';

const tok = seedTokenizer();
const messages: ChatMessage[] = [
  { role: 'user', content: 'Name a color.' },
  { role: 'assistant', content: 'Blue.' },
];
const errorOf = (source: string) => {
  try {
    chatRenderer(source, tok, 'the chat template in /models/m').pieces(messages, ['assistant'], 'd.jsonl row 3');
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the template to fail');
};

describe('chat templates with bounded work', () => {
  it('render as @huggingface/jinja renders them (range, namespace, raise_exception, strftime_now in scope)', () => {
    const source =
      "{{ range(10, 0, -3)|join(',') }}{{ strftime_now('%Y') }}{% if false %}{{ raise_exception('no') }}{% endif %}{{ bos_token }}" +
      '{% set ns = namespace(n=0) %}{% for i in range(messages|length) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}:{{ messages[i].content }}|{% endfor %}';
    const pieces = chatRenderer(source, tok).pieces(messages, ['assistant'], 'row 0');
    const expected = new Template(source).render({
      messages,
      add_generation_prompt: false,
      bos_token: '<s>',
      eos_token: '</s>',
    });
    expect(pieces.map((p) => p.text).join('')).toBe(expected);
    expect(expected).toBe(`10,7,4,1${new Date().getFullYear()}<s>1:Name a color.|2:Blue.|`);
    expect(
      chatRenderer(CHATML_TEMPLATE, tok)
        .pieces(messages, ['assistant'], 'row 0')
        .map((p) => p.text)
        .join(''),
    ).toBe(
      new Template(CHATML_TEMPLATE).render({
        messages,
        add_generation_prompt: false,
        bos_token: '<s>',
        eos_token: '</s>',
      }),
    );
  });

  it('refuses a range(1e8) loop at once, naming the row and the template, instead of running out of memory', () => {
    const err = errorOf('{% for i in range(100000000) %}{% endfor %}{{ messages[0].content }}');
    expect(err).toBeInstanceOf(FtError);
    expect(err.message).toBe(
      `d.jsonl row 3: the chat template in /models/m failed (range() would make 100000000 items; a render may make ${MAX_RANGE_ITEMS} in all)`,
    );
  });

  it('counts every range() call of a render against the bound', () => {
    expect(errorOf('{% set a = range(60000) %}{% set b = range(60000) %}').message).toMatch(
      /range\(\) would make 60000 items; a render may make 100000 in all/,
    );
  });
});
