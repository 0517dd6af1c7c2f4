import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../util/rng.ts';
import { FtError } from '../util/errors.ts';
import { tokenizerJson, trainBpe } from './bpe.ts';
import { DecodeStream, loadTokenizer, MAX_PIECE_PART, pieceParts, tokenizerFromJson } from './tokenizer.ts';

const corpus = [
  'The quick brown fox jumps over the lazy dog.',
  'Below is an instruction that describes a task.',
  '### Response: the answer is 42.',
];
const model = trainBpe(corpus, { vocabSize: 330, specialTokens: ['<unk>', '<s>', '</s>'] });
const withBos = tokenizerJson(model, { bos: '<s>' }); // Llama-3 style: the post-processor adds BOS
const plain = tokenizerJson(model); // Llama-2 style files rely on add_bos_token

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-tok-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('special tokens and flags', () => {
  it('follows add_bos_token / add_eos_token from tokenizer_config.json, and pads with EOS when there is no pad token', () => {
    const tok = tokenizerFromJson(
      plain,
      {
        bos_token: '<s>',
        eos_token: { content: '</s>', special: true },
        add_bos_token: true,
        add_eos_token: true,
        chat_template: '{{ x }}',
      },
      null,
      'm',
    );
    expect([tok.bosId, tok.eosId, tok.padId, tok.addBos, tok.addEos, tok.vocabSize, tok.chatTemplate]).toEqual([
      1,
      2,
      2,
      true,
      true,
      330,
      '{{ x }}',
    ]);
    const ids = tok.encode('the dog');
    expect(ids[0]).toBe(1);
    expect(ids.at(-1)).toBe(2);
    expect(tok.encode('the dog', { addSpecialTokens: false })).toEqual(ids.slice(1, -1));
    expect(tok.decode(ids)).toBe('<s>the dog</s>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('the dog');
  });

  it('detects BOS added by the tokenizer.json post-processor when the config has no add_bos_token', () => {
    const tok = tokenizerFromJson(withBos, { bos_token: '<s>', eos_token: '</s>' }, null, 'm');
    expect([tok.addBos, tok.addEos]).toEqual([true, false]);
    expect(tok.encode('fox')[0]).toBe(1);
    expect(tok.encode('fox', { addSpecialTokens: false })[0]).not.toBe(1);
  });

  it('falls back to config.json ids without tokenizer_config.json', () => {
    const tok = tokenizerFromJson(plain, null, { bos_token_id: 1, eos_token_id: [2, 0] }, 'm');
    expect([tok.bosId, tok.eosId, tok.padId, tok.addBos, tok.chatTemplate]).toEqual([1, 2, 2, false, null]);
    expect(tok.tokenToId('<s>')).toBe(1);
    expect(tok.tokenToId('no such token')).toBeNull();
  });

  it('has no BOS when tokenizer_config.json sets bos_token to null, as Qwen2 does', () => {
    const tok = tokenizerFromJson(
      plain,
      { bos_token: null, eos_token: '</s>' },
      { bos_token_id: 1, eos_token_id: 2 },
      'm',
    );
    expect([tok.bosId, tok.addBos]).toEqual([null, false]);
  });

  it('uses an explicit pad token', () => {
    expect(tokenizerFromJson(plain, { eos_token: '</s>', pad_token: '<unk>' }, null, 'm').padId).toBe(0);
  });
});

describe('loadTokenizer', () => {
  it('reads tokenizer.json, tokenizer_config.json and chat_template.jinja from a folder', async () => {
    const dir = path.join(tmp, 'ok');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(withBos));
    await fsp.writeFile(
      path.join(dir, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }),
    );
    await fsp.writeFile(path.join(dir, 'chat_template.jinja'), '{% for m in messages %}{{ m.content }}{% endfor %}');
    const tok = await loadTokenizer(dir);
    expect(tok.decode(tok.encode('The lazy fox.'), { skipSpecialTokens: true })).toBe('The lazy fox.');
    expect(tok.chatTemplate).toContain('for m in messages');
  });

  it('gives one clear line for a missing file, a missing EOS, an unknown special, an id out of range', async () => {
    const err = async (p: () => unknown) => {
      try {
        await p();
      } catch (e) {
        expect(e).toBeInstanceOf(FtError);
        return (e as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(await err(() => loadTokenizer(path.join(tmp, 'absent')))).toMatch(
      /absent\/tokenizer\.json: cannot read \(ENOENT\)/,
    );
    expect(await err(() => tokenizerFromJson(plain, {}, null, 'm'))).toBe(
      'm: no EOS token (expected eos_token in tokenizer_config.json or eos_token_id in config.json)',
    );
    expect(await err(() => tokenizerFromJson(plain, { eos_token: '<|eot|>' }, null, 'm'))).toBe(
      "m: tokenizer_config.json eos_token '<|eot|>' is not in the vocabulary",
    );
    const tok = tokenizerFromJson(plain, { eos_token: '</s>' }, null, 'm');
    expect(await err(() => tok.decode([5, 330]))).toBe('token id 330 is outside the vocabulary [0, 330)');
    expect(tok.decode([])).toBe('');
  });
});

describe('DecodeStream', () => {
  const tok = tokenizerFromJson(plain, { eos_token: '</s>' }, null, 'm');

  it('yields nothing until a multi-byte character split across byte tokens is complete', () => {
    const ids = tok.encode('🦙', { addSpecialTokens: false });
    expect(ids.length).toBe(4); // one byte-level token per UTF-8 byte
    const s = new DecodeStream(tok);
    expect(ids.map((id) => s.push(id))).toEqual(['', '', '', '🦙']);
  });

  it('streams pieces that concatenate to the full decode', () => {
    const text = 'The quick 🦊 jumps — über 東京!\nDone.';
    const ids = tok.encode(text, { addSpecialTokens: false });
    const s = new DecodeStream(tok);
    const pieces = ids.map((id) => s.push(id));
    expect(pieces.join('') + s.flush()).toBe(text);
    expect(pieces.filter((p) => p !== '').length).toBeGreaterThan(5);
    expect(pieces.join('')).not.toContain('\uFFFD');
  });

  it('flushes an incomplete character as U+FFFD', () => {
    const ids = tok.encode('é', { addSpecialTokens: false });
    const s = new DecodeStream(tok);
    expect(s.push(ids[0])).toBe('');
    expect(s.flush()).toBe('\uFFFD');
  });
});

describe('encode through the per-piece cache', () => {
  const seed = readFileSync(path.join(__dirname, '../../shared/data/alpaca-seed/seed_tasks.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .flatMap((l) => {
      const t = JSON.parse(l) as { instruction: string; instances: { input: string; output: string }[] };
      return [
        t.instruction,
        ...t.instances.flatMap((i) => [i.input, i.output, `${t.instruction}\n\n${i.input}\n${i.output}`]),
      ];
    });
  const rng = new Rng(11);
  const alphabet = [
    ..."ab Zé中😀 \n\t\r  's't're'll 0123 .,!?-_#()<>/s\u2581",
    '<s>',
    '</s>',
    "'",
    '  ',
    '\n\n',
    ' the',
    'e ',
  ];
  const fuzz = Array.from({ length: 400 }, () =>
    Array.from({ length: 1 + rng.int(40) }, () => alphabet[rng.int(alphabet.length)]).join(''),
  );
  const texts = [...seed, ...fuzz, ...seed, '', ' ', '  x', 'x  ', '\u2581x', ' \u2581 '];

  /** Every text encodes to exactly the ids @huggingface/tokenizers gives (the second pass over seed hits the cache). */
  function expectLibraryIds(json: Record<string, unknown>): void {
    const reference = new HfTokenizer(json, {});
    const tok = tokenizerFromJson(json, { eos_token: '</s>' }, null, 'test');
    for (const text of texts)
      expect(tok.encode(text, { addSpecialTokens: false }), JSON.stringify(text)).toEqual(
        reference.encode(text, { add_special_tokens: false }).ids,
      );
  }
  const spm = trainBpe(seed, { vocabSize: 700, specialTokens: ['<unk>', '<s>', '</s>'], style: 'sentencepiece' });

  it('gives the library ids for byte-level BPE (Llama 3 layout) on the Alpaca seed tasks and on random text', () => {
    expectLibraryIds(tokenizerJson(model));
  });

  it('gives the library ids for SentencePiece-style BPE, as Llama 2 (Prepend normalizer) and as newer files (Metaspace) lay it out', () => {
    const llama2 = tokenizerJson(spm);
    expect(llama2.pre_tokenizer).toBeNull();
    expectLibraryIds(llama2);
    for (const prepend_scheme of ['first', 'always']) {
      expectLibraryIds({
        ...llama2,
        normalizer: null,
        pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme, split: false },
      });
    }
  });

  it('leaves SentencePiece text whole when a token joins a word to the next one', () => {
    const json = tokenizerJson(spm);
    const m = json.model as { vocab: Record<string, number>; merges: string[] };
    // a merge of 'e' with the next word's mark, ranked first: pieces would split "the end" where this token sits
    const joined = {
      ...json,
      model: { ...m, vocab: { ...m.vocab, 'e\u2581': spm.vocab.length }, merges: ['e \u2581', ...m.merges] },
    };
    expect(new HfTokenizer(joined, {}).encode('the end', { add_special_tokens: false }).tokens).toContain('e\u2581');
    expectLibraryIds(joined);
  });

  it('encodes a byte-level word longer than MAX_PIECE_PART in parts (bounded memory), each as the library encodes it', () => {
    const json = tokenizerJson(model);
    const reference = new HfTokenizer(json, {});
    const tok = tokenizerFromJson(json, { eos_token: '</s>' }, null, 'test');
    // one piece of letters; 𝒳 is a letter of two UTF-16 units, and the 10-letter start puts the first cut between them
    const word = `aaaaaaaaaa${'quick𝒳brown'.repeat(Math.ceil((2.5 * MAX_PIECE_PART) / 12))}`;
    const parts = pieceParts(word);
    expect(parts.length).toBe(3);
    expect(parts.join('')).toBe(word);
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(MAX_PIECE_PART);
    expect(word.charCodeAt(MAX_PIECE_PART)).toBeGreaterThanOrEqual(0xdc00); // a plain cut would split 𝒳
    expect(parts.every((p) => !/^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/.test(p))).toBe(true); // no letter cut in half
    const ids = tok.encode(word, { addSpecialTokens: false });
    expect(ids).toEqual(parts.flatMap((p) => reference.encode(p, { add_special_tokens: false }).ids));
    expect(tok.decode(ids)).toBe(word);
    expect(pieceParts('short')).toEqual(['short']);
  });
});
