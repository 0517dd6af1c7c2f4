// A Hugging Face BPE tokenizer as llama.cpp's `tokenizer.ggml.*` metadata. Byte-level BPE (GPT-2, Llama 3, Qwen2)
// becomes llama.cpp's `gpt2` model with its merges and the pre-tokenizer named by the split regex; SentencePiece-style
// BPE (Llama 2, Mistral, TinyLlama: ▁ for spaces, byte fallback) becomes its `llama` model, whose merge order is the
// token scores: a token made by merge k scores -(k + 1), so llama.cpp's highest-score-first merging replays the
// merges in rank order as Hugging Face's BPE does.
import { GGUFValueType } from '@huggingface/gguf';
import type { Tokenizer } from '../model/tokenizer.ts';
import { FtError } from '../util/errors.ts';
import type { GgufKV } from './gguf-file.ts';

/** gguf-py TokenType. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

type Json = Record<string, unknown>;

/** Split regexes of byte-level tokenizers (as their tokenizer.json spells them) -> llama.cpp's pre-tokenizer name. */
const PRE_TOKENIZERS: Record<string, string> = {
  // Llama 3
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    'llama-bpe',
  // Qwen2
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    'qwen2',
};

function short(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/** llama.cpp's name for the byte-level pre-tokenizer of `tj`: GPT-2's own regex, or a Split regex it knows. */
function preTokenizerName(tj: Json, file: string): string {
  const pre = tj.pre_tokenizer as Json | null | undefined;
  if (pre?.type === 'ByteLevel' && pre.use_regex !== false && pre.add_prefix_space !== true && tj.normalizer == null)
    return 'gpt-2';
  const steps = (pre?.type === 'Sequence' ? pre.pretokenizers : []) as Json[];
  const regex = (steps[0]?.pattern as Json | undefined)?.Regex;
  if (
    steps.length === 2 &&
    steps[0].type === 'Split' &&
    steps[1].type === 'ByteLevel' &&
    steps[1].use_regex === false &&
    typeof regex === 'string' &&
    regex in PRE_TOKENIZERS
  ) {
    return PRE_TOKENIZERS[regex];
  }
  throw new FtError(
    `${file}: pre_tokenizer ${short(pre)} is not one llama.cpp has a name for (expected GPT-2's ByteLevel, or the Split regex of Llama 3 or Qwen2)`,
  );
}

/** Whether the tokenizer is byte-level BPE (a ByteLevel pre-tokenizer or decoder) rather than SentencePiece-style. */
function isByteLevel(tj: Json): boolean {
  const pre = tj.pre_tokenizer as Json | null | undefined;
  const steps = (pre?.type === 'Sequence' ? pre.pretokenizers : [pre]) as (Json | null | undefined)[];
  return steps.some((s) => s?.type === 'ByteLevel') || (tj.decoder as Json | null | undefined)?.type === 'ByteLevel';
}

/** SentencePiece's "add a ▁ in front": a Prepend ▁ normalizer, or a Metaspace pre-tokenizer that prepends. */
function addsSpacePrefix(tj: Json): boolean {
  const norm = tj.normalizer as Json | null | undefined;
  const steps = (norm?.type === 'Sequence' ? norm.normalizers : [norm]) as (Json | null | undefined)[];
  if (steps.some((s) => s?.type === 'Prepend' && s.prepend === '\u2581')) return true;
  const pre = tj.pre_tokenizer as Json | null | undefined;
  return pre?.type === 'Metaspace' && ['always', 'first'].includes((pre.prepend_scheme as string) ?? 'always');
}

const mergeText = (m: unknown) => (Array.isArray(m) ? m.join(' ') : String(m));

/**
 * The tokenizer.ggml.* and tokenizer.chat_template entries for `tok` (loaded from `source`), with the token list
 * padded to the model's `vocabSize` rows of the embedding (padding tokens are UNUSED, named [PAD{id}]).
 */
export function tokenizerKV(tok: Tokenizer, vocabSize: number, source: string): GgufKV {
  const tj = tok.origin.tokenizerJson;
  const file = `${source}/tokenizer.json`;
  const model = tj.model as Json;
  if (model?.type !== 'BPE')
    throw new FtError(`${file}: model type ${short(model?.type)} cannot be written for llama.cpp (expected BPE)`);
  if (tok.vocabSize > vocabSize)
    throw new FtError(`${file}: ${tok.vocabSize} tokens, more than the model's vocab_size ${vocabSize}`);
  const byteLevel = isByteLevel(tj);
  const tokens: string[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize);
  for (const [text, id] of Object.entries(model.vocab as Record<string, number>)) {
    tokens[id] = text;
    types[id] =
      !byteLevel && /^<0x[0-9A-F]{2}>$/.test(text) && model.byte_fallback === true
        ? TOKEN_TYPE.BYTE
        : TOKEN_TYPE.NORMAL;
  }
  for (const t of (tj.added_tokens ?? []) as { id: number; content: string; special?: boolean }[]) {
    tokens[t.id] = t.content;
    types[t.id] = t.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  }
  const unkId = typeof model.unk_token === 'string' ? tok.tokenToId(model.unk_token) : null;
  if (unkId !== null) types[unkId] = TOKEN_TYPE.UNKNOWN;
  for (let id = 0; id < vocabSize; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.UNUSED;
    }
  }

  const merges = ((model.merges ?? []) as unknown[]).map(mergeText);
  const kv: GgufKV = {
    'tokenizer.ggml.model': { value: byteLevel ? 'gpt2' : 'llama', type: GGUFValueType.STRING },
    'tokenizer.ggml.pre': { value: byteLevel ? preTokenizerName(tj, file) : 'default', type: GGUFValueType.STRING },
    'tokenizer.ggml.tokens': { value: tokens, type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING },
  };
  if (byteLevel) {
    kv['tokenizer.ggml.token_type'] = { value: [...types], type: GGUFValueType.ARRAY, subType: GGUFValueType.INT32 };
    kv['tokenizer.ggml.merges'] = { value: merges, type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING };
  } else {
    const rank = new Map<string, number>();
    merges.forEach((m, i) => {
      const merged = m.replace(' ', '');
      if (!rank.has(merged)) rank.set(merged, i);
    });
    // a normal token no merge makes is never formed by Hugging Face's BPE: the lowest score keeps llama.cpp from preferring it
    const scores = tokens.map((t, id) => (types[id] !== TOKEN_TYPE.NORMAL ? 0 : -((rank.get(t) ?? merges.length) + 1)));
    kv['tokenizer.ggml.scores'] = { value: scores, type: GGUFValueType.ARRAY, subType: GGUFValueType.FLOAT32 };
    kv['tokenizer.ggml.token_type'] = { value: [...types], type: GGUFValueType.ARRAY, subType: GGUFValueType.INT32 };
    kv['tokenizer.ggml.add_space_prefix'] = { value: addsSpacePrefix(tj), type: GGUFValueType.BOOL };
  }
  if (tok.bosId !== null) kv['tokenizer.ggml.bos_token_id'] = { value: tok.bosId, type: GGUFValueType.UINT32 };
  kv['tokenizer.ggml.eos_token_id'] = { value: tok.eosId, type: GGUFValueType.UINT32 };
  if (unkId !== null) kv['tokenizer.ggml.unknown_token_id'] = { value: unkId, type: GGUFValueType.UINT32 };
  kv['tokenizer.ggml.padding_token_id'] = { value: tok.padId, type: GGUFValueType.UINT32 };
  kv['tokenizer.ggml.add_bos_token'] = { value: tok.addBos, type: GGUFValueType.BOOL };
  kv['tokenizer.ggml.add_eos_token'] = { value: tok.addEos, type: GGUFValueType.BOOL };
  if (tok.chatTemplate) kv['tokenizer.chat_template'] = { value: tok.chatTemplate, type: GGUFValueType.STRING };
  return kv;
}
