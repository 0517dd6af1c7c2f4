import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { Rng } from '../util/rng.ts';
import { BYTE_TO_UNICODE, tokenizerJson, trainBpe } from './bpe.ts';

const corpus = [
  'The quick brown fox jumps over the lazy dog.',
  'The lazy dog sleeps; the quick fox runs away from the dog.',
  "Write a short poem about the sea. It's calm, isn't it?",
  'Numbers like 2024 and 3.14 appear in text too, as do tabs\tand\nnewlines.',
].flatMap((s) => [s, s.toUpperCase(), s.toLowerCase()]);
const specials = ['<unk>', '<s>', '</s>', '<pad>'];

describe('trainBpe', () => {
  it('maps all 256 bytes to distinct printable characters, as GPT-2 does', () => {
    expect(new Set(BYTE_TO_UNICODE).size).toBe(256);
    expect(BYTE_TO_UNICODE[0x20]).toBe('Ġ');
    expect(BYTE_TO_UNICODE[0x0a]).toBe('Ċ');
    expect(BYTE_TO_UNICODE[0x41]).toBe('A');
  });

  it('lays out specials, then bytes, then merges, up to the target size', () => {
    const m = trainBpe(corpus, { vocabSize: 300, specialTokens: specials });
    expect(m.vocab.length).toBe(300);
    expect(m.vocab.slice(0, 4)).toEqual(specials);
    expect(m.vocab.slice(4, 260)).toEqual(BYTE_TO_UNICODE);
    expect(m.merges.length).toBe(40);
    expect(m.vocab.slice(260).every((t) => t.length >= 2)).toBe(true);
  });

  it('is deterministic', () => {
    const a = trainBpe(corpus, { vocabSize: 320, specialTokens: specials });
    const b = trainBpe([...corpus], { vocabSize: 320, specialTokens: specials });
    expect(JSON.stringify(tokenizerJson(b))).toBe(JSON.stringify(tokenizerJson(a)));
  });

  it('stops when no pair is left', () => {
    const m = trainBpe(['ab ab'], { vocabSize: 1000, specialTokens: [] });
    expect(m.merges).toEqual([
      ['a', 'b'],
      ['Ġ', 'ab'],
    ]);
  });
});

describe('the emitted tokenizer.json, run by @huggingface/tokenizers', () => {
  const model = trainBpe(corpus, { vocabSize: 400, specialTokens: specials });
  const tok = new Tokenizer(tokenizerJson(model, { bos: '<s>' }), {});

  it('uses multi-byte merges, not a character map', () => {
    const enc = tok.encode('the quick brown fox', { add_special_tokens: false });
    expect(enc.tokens).toContain('Ġquick');
    expect(enc.ids.length).toBeLessThan(8);
  });

  it('round trips arbitrary text, unicode and emoji included', () => {
    const samples = [
      'Hello, world!',
      'naïve café — 東京 🦙🏳️‍🌈 ok',
      '  leading and trailing  ',
      'a\r\n\tb\u0000c',
      "it's 100% 'quoted'",
      '',
    ];
    const rng = new Rng(1);
    for (let k = 0; k < 50; k++) {
      // random code points across planes, skipping lone surrogates
      samples.push(
        String.fromCodePoint(
          ...Array.from({ length: 12 }, () => {
            const c = rng.int(0x1ffff);
            return c >= 0xd800 && c < 0xe000 ? 0x41 : c;
          }),
        ),
      );
    }
    for (const s of samples) {
      const ids = tok.encode(s, { add_special_tokens: false }).ids;
      expect(ids.length === 0 ? '' : tok.decode(ids, { clean_up_tokenization_spaces: false })).toBe(s);
    }
  });

  it('prepends <s> as a special token and treats specials in text as single tokens', () => {
    expect(tok.encode('the dog').ids[0]).toBe(1);
    expect(tok.encode('x</s>', { add_special_tokens: false }).ids.at(-1)).toBe(2);
  });
});
