// A model folder's tokenizer: tokenizer.json run by @huggingface/tokenizers, special tokens and flags from
// tokenizer_config.json (falling back to config.json ids), and an incremental decoder for streaming generation.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { FtError } from '../util/errors.ts';

export interface Tokenizer {
  /** Token ids of `text`; with addSpecialTokens (default true) BOS/EOS are added as the tokenizer is configured to. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  bosId: number | null;
  eosId: number;
  /** The pad token, or EOS when the tokenizer has none (the usual Llama fine-tuning choice). */
  padId: number;
  /** Ids run from 0 to vocabSize - 1, added tokens included. */
  vocabSize: number;
  chatTemplate: string | null;
  addBos: boolean;
  addEos: boolean;
  tokenToId(tok: string): number | null;
  /** the parsed files it was built from: enough to build the same tokenizer again (on a worker thread) */
  origin: TokenizerOrigin;
}

/** What tokenizerFromJson takes, as plain JSON (structured-cloneable). */
export interface TokenizerOrigin {
  tokenizerJson: Json;
  tokenizerConfig: Json | null;
  modelConfig: Json | null;
  source: string;
}

type Json = Record<string, unknown>;

async function readJson(file: string, required: boolean): Promise<Json | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new FtError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const json = JSON.parse(text);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('expected a JSON object');
    return json;
  } catch (e) {
    throw new FtError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** tokenizer_config.json names a special token as a string or as an AddedToken object {content, ...}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string')
    return (v as Json).content as string;
  return null;
}

/** chat_template is a string, or a list of {name, template} of which 'default' is the one generation uses. */
function chatTemplateOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const t = v.find((x) => x?.name === 'default') ?? v[0];
    return typeof t?.template === 'string' ? t.template : null;
  }
  return null;
}

function firstId(v: unknown): number | null {
  const id = Array.isArray(v) ? v[0] : v;
  return Number.isInteger(id) ? (id as number) : null;
}

/**
 * A Tokenizer from parsed files. `modelConfig` (config.json) supplies bos/eos ids the tokenizer config lacks.
 * `source` names the folder in errors.
 */
export function tokenizerFromJson(
  tokenizerJson: Json,
  tokenizerConfig: Json | null,
  modelConfig: Json | null,
  source: string,
): Tokenizer {
  const tc = tokenizerConfig ?? {};
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(tokenizerJson, tc);
  } catch (e) {
    throw new FtError(`${source}: tokenizer.json cannot be used (${(e as Error).message})`);
  }
  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const idOf = (field: string): number | null => {
    const content = tokenContent(tc[field]);
    if (content === null) return null;
    const id = hf.token_to_id(content);
    if (id === undefined)
      throw new FtError(`${source}: tokenizer_config.json ${field} '${content}' is not in the vocabulary`);
    return id;
  };
  // An explicit `bos_token: null` (Qwen2) means no BOS, whatever config.json says
  const bosId = tc.bos_token === null ? null : (idOf('bos_token') ?? firstId(modelConfig?.bos_token_id));
  const eosId = idOf('eos_token') ?? firstId(modelConfig?.eos_token_id);
  if (eosId === null)
    throw new FtError(
      `${source}: no EOS token (expected eos_token in tokenizer_config.json or eos_token_id in config.json)`,
    );
  const padId = idOf('pad_token') ?? firstId(modelConfig?.pad_token_id) ?? eosId;
  const cleanUp = tc.clean_up_tokenization_spaces === true;

  // Explicit add_bos_token / add_eos_token (Llama 2, Mistral) decide; otherwise the post-processor in tokenizer.json does (Llama 3).
  const explicit = typeof tc.add_bos_token === 'boolean' || typeof tc.add_eos_token === 'boolean';
  let addBos: boolean;
  let addEos: boolean;
  if (explicit) {
    addBos = tc.add_bos_token === true && bosId !== null;
    addEos = tc.add_eos_token === true;
  } else {
    const probe = hf.encode('a', { add_special_tokens: true }).ids;
    addBos = bosId !== null && probe[0] === bosId;
    addEos = probe.at(-1) === eosId;
  }

  const encodeText =
    pieceCachedEncoder(tokenizerJson, hf) ?? ((text: string) => hf.encode(text, { add_special_tokens: false }).ids);

  return {
    bosId,
    eosId,
    padId,
    vocabSize,
    chatTemplate: chatTemplateOf(tc.chat_template),
    addBos,
    addEos,
    encode(text, opts = {}) {
      const special = opts.addSpecialTokens ?? true;
      if (!special) return encodeText(text);
      if (!explicit) return hf.encode(text, { add_special_tokens: true }).ids;
      const ids = encodeText(text);
      if (special && addBos) ids.unshift(bosId!);
      if (special && addEos) ids.push(eosId);
      return ids;
    },
    decode(ids, opts = {}) {
      if (ids.length === 0) return '';
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
          throw new FtError(`token id ${id} is outside the vocabulary [0, ${vocabSize})`);
      }
      return hf.decode(ids, {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: cleanUp,
      });
    },
    tokenToId(tok) {
      return hf.token_to_id(tok) ?? null;
    },
    origin: { tokenizerJson, tokenizerConfig, modelConfig, source },
  };
}

/** The pre-tokenizer regex of GPT-2, which a ByteLevel pre-tokenizer with use_regex splits text with. */
const GPT2_PIECES = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const PIECE_CACHE_LIMIT = 1 << 17;
/** Pieces longer than this are not cached (the Rust tokenizers' BPE cache keeps words under 256 characters too). */
const MAX_CACHED_PIECE = 256;
/**
 * A byte-level piece longer than this is encoded in parts of at most this many UTF-16 units: the library's BPE holds
 * ~45 bytes per character of a word, and one 100 MB word ran the process out of memory. Ids can differ from the
 * one-piece encoding only where parts meet, 64 Ki characters into a word no real text has.
 */
export const MAX_PIECE_PART = 1 << 16;

/** `piece` cut into parts of at most MAX_PIECE_PART units, never between the two halves of a surrogate pair. */
export function pieceParts(piece: string): string[] {
  const parts: string[] = [];
  for (let at = 0; at < piece.length; ) {
    let end = Math.min(piece.length, at + MAX_PIECE_PART);
    const c = piece.charCodeAt(end - 1);
    if (end < piece.length && c >= 0xd800 && c <= 0xdbff) end--;
    parts.push(piece.slice(at, end));
    at = end;
  }
  return parts;
}
/** SentencePiece's word-start mark, which stands for a space. */
const SPM_SPACE = '\u2581';

/**
 * How a tokenizer's text falls into pieces that no token straddles, so a text's ids are its pieces' ids:
 * `pieces` splits a text, `asText` gives the text the library encodes to exactly that piece's tokens.
 */
interface PieceSplit {
  pieces(text: string): string[];
  asText(piece: string): string;
  /** a long piece in parts encoded one by one (a SentencePiece piece stays whole: a part would gain a ▁) */
  parts(piece: string): string[];
}

/** GPT-2-style byte-level BPE (Llama 3, Qwen2): the pre-tokenizer's regex pieces, when nothing normalizes first. */
function byteLevelSplit(tokenizerJson: Json): PieceSplit | null {
  const pre = tokenizerJson.pre_tokenizer as Json | null | undefined;
  if (
    tokenizerJson.normalizer != null ||
    pre?.type !== 'ByteLevel' ||
    pre.add_prefix_space === true ||
    pre.use_regex === false
  )
    return null;
  return { pieces: (text) => text.match(GPT2_PIECES) ?? [], asText: (piece) => piece, parts: pieceParts };
}

/**
 * SentencePiece-style BPE (Llama 2, TinyLlama, Mistral): spaces become ▁ and one ▁ is prepended (a Prepend + Replace
 * normalizer, or a Metaspace pre-tokenizer that does not split), then the whole text is one BPE word. Pieces are a
 * run of ▁ with the word after it (a trailing run of ▁ stays with the last word); they split it exactly when no
 * token holds ▁ after another character, which is checked on the vocabulary.
 */
function sentencePieceSplit(tokenizerJson: Json): PieceSplit | null {
  const norm = tokenizerJson.normalizer as Json | null | undefined;
  const pre = tokenizerJson.pre_tokenizer as Json | null | undefined;
  const steps = (norm?.type === 'Sequence' ? norm.normalizers : []) as Json[];
  const prependNormalizer =
    pre == null &&
    steps.length === 2 &&
    steps[0].type === 'Prepend' &&
    steps[0].prepend === SPM_SPACE &&
    steps[1].type === 'Replace' &&
    (steps[1].pattern as Json | undefined)?.String === ' ' &&
    steps[1].content === SPM_SPACE;
  const metaspace =
    norm == null &&
    pre?.type === 'Metaspace' &&
    (pre.replacement ?? SPM_SPACE) === SPM_SPACE &&
    pre.split === false &&
    ['always', 'first'].includes(pre.prepend_scheme as string);
  const model = tokenizerJson.model as Json;
  // ignore_merges looks a whole BPE word (here the whole text) up in the vocabulary first
  if ((!prependNormalizer && !metaspace) || model.ignore_merges === true) return null;
  const vocab = (model.vocab ?? {}) as Json;
  if (Object.keys(vocab).some((token) => /[^\u2581]\u2581/.test(token))) return null;
  const spaces = / /g;
  const marks = /\u2581/g;
  const PIECES = /\u2581*[^\u2581]+(?:\u2581+$)?|\u2581+/g;
  return {
    // Prepend always adds one ▁; Metaspace adds one unless the text already starts with one
    pieces(text) {
      const marked = text.replace(spaces, SPM_SPACE);
      return (prependNormalizer || !marked.startsWith(SPM_SPACE) ? SPM_SPACE + marked : marked).match(PIECES) ?? [];
    },
    // every piece starts with ▁, which Metaspace keeps as it is and Prepend re-adds
    asText: (piece) => (prependNormalizer ? piece.slice(1) : piece).replace(marks, ' '),
    parts: (piece) => [piece],
  };
}

/**
 * A faster encode (no special tokens) for BPE tokenizers whose text splits into independent pieces (byte-level
 * or SentencePiece-style), or null for other kinds: each distinct piece ("word") is encoded once and remembered.
 * @huggingface/tokenizers re-encodes every piece through TextEncoder and an LRU whose hits cost a delete and an
 * insert (~8x slower on Alpaca text), and never caches a SentencePiece text, which it runs BPE over whole (~10x).
 * Texts holding an added token (which the library splits out first) take the library's path.
 */
function pieceCachedEncoder(tokenizerJson: Json, hf: HfTokenizer): ((text: string) => number[]) | null {
  const model = tokenizerJson.model as Json | undefined;
  if (model?.type !== 'BPE' || model.dropout != null) return null;
  const split = byteLevelSplit(tokenizerJson) ?? sentencePieceSplit(tokenizerJson);
  if (!split) return null;
  const addedContents = ((tokenizerJson.added_tokens ?? []) as Json[])
    .map((t) => String(t.content))
    .filter((c) => c.length > 0);
  const added = addedContents.length
    ? new RegExp(addedContents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'))
    : null;
  const cache = new Map<string, number[]>();
  return (text) => {
    if (text === '' || added?.test(text)) return hf.encode(text, { add_special_tokens: false }).ids;
    const ids: number[] = [];
    for (const piece of split.pieces(text)) {
      if (piece.length > MAX_CACHED_PIECE) {
        for (const part of split.parts(piece))
          for (const id of hf.encode(split.asText(part), { add_special_tokens: false }).ids) ids.push(id);
        continue;
      }
      let pieceIds = cache.get(piece);
      if (pieceIds === undefined) {
        const fresh = hf.encode(split.asText(piece), { add_special_tokens: false }).ids;
        if (cache.size >= PIECE_CACHE_LIMIT) cache.clear();
        cache.set(piece, fresh);
        pieceIds = fresh;
      }
      for (const id of pieceIds!) ids.push(id);
    }
    return ids;
  };
}

/** Loads `dir/tokenizer.json` with `tokenizer_config.json` (and config.json ids and chat_template.jinja when present). */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokenizerJson = await readJson(path.join(dir, 'tokenizer.json'), true);
  const tokenizerConfig = await readJson(path.join(dir, 'tokenizer_config.json'), false);
  const modelConfig = await readJson(path.join(dir, 'config.json'), false);
  const tok = tokenizerFromJson(tokenizerJson!, tokenizerConfig, modelConfig, dir);
  if (tok.chatTemplate === null) {
    // newer transformers save the template as its own file
    tok.chatTemplate = await fsp.readFile(path.join(dir, 'chat_template.jinja'), 'utf8').catch(() => null);
  }
  return tok;
}

/**
 * Incremental decoding for streaming generation: `push(id)` returns the text the new token completes ('' while
 * a multi-byte UTF-8 character is still split across byte-level tokens). Decodes a short window of recent ids
 * with one token of left context, as the Rust tokenizers' DecodeStream does, so cost stays constant per token.
 */
export class DecodeStream {
  private ids: number[] = [];
  private prefix = '';
  private prefixIndex = 0;

  constructor(
    private readonly tok: Pick<Tokenizer, 'decode'>,
    private readonly opts: { skipSpecialTokens?: boolean } = {},
  ) {}

  push(id: number): string {
    this.ids.push(id);
    const text = this.tok.decode(this.ids, this.opts);
    if (text.length <= this.prefix.length || text.endsWith('\uFFFD')) return '';
    const fresh = text.slice(this.prefix.length);
    const newPrefixIndex = this.ids.length - this.prefixIndex;
    this.ids = this.ids.slice(this.prefixIndex);
    this.prefix = this.tok.decode(this.ids, this.opts);
    this.prefixIndex = newPrefixIndex;
    return fresh;
  }

  /** Whatever is still pending at the end (an incomplete character decodes as U+FFFD). */
  flush(): string {
    const text = this.tok.decode(this.ids, this.opts);
    const rest = text.length > this.prefix.length ? text.slice(this.prefix.length) : '';
    this.ids = [];
    this.prefix = '';
    this.prefixIndex = 0;
    return rest;
  }
}
