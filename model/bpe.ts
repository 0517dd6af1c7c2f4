// Byte-level BPE training, GPT-2 style (byte -> printable unicode map, regex pre-tokenization, ByteLevel decoder),
// emitting a standard Hugging Face tokenizer.json. Hand-written: no maintained JS library trains BPE
// (@huggingface/tokenizers in JS only runs tokenizers).

/** GPT-2's pre-tokenization pattern, the one the ByteLevel pre-tokenizer applies with use_regex. */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible map from each byte to a printable character (printable Latin-1 maps to itself, the rest to U+0100...). */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  return map;
})();

export interface BpeModel {
  /** id -> token: special tokens first, then the 256 byte symbols in byte order, then one token per new merge. */
  vocab: string[];
  /** In rank order. */
  merges: [string, string][];
  specialTokens: string[];
}

const encoder = new TextEncoder();

/** The byte-level symbols of each pre-token of `text`. */
export function preTokenize(text: string): string[] {
  return (text.match(GPT2_PATTERN) ?? []).map((piece) => Array.from(encoder.encode(piece), (b) => BYTE_TO_UNICODE[b]).join(''));
}

/** A pair of symbol ids as one map key (ids stay below 2^21). */
const pairKey = (a: number, b: number) => a * 2097152 + b;

/**
 * Learns merges until the vocabulary (specials + 256 bytes + merges) reaches `vocabSize` or no adjacent pair is left.
 * Each step merges the most frequent adjacent pair, ties going to the smallest (left id, right id): deterministic.
 */
export function trainBpe(texts: Iterable<string>, opts: { vocabSize: number; specialTokens: string[] }): BpeModel {
  const vocab = [...opts.specialTokens, ...BYTE_TO_UNICODE];
  if (opts.vocabSize < vocab.length) throw new RangeError(`vocab size ${opts.vocabSize} is below the ${vocab.length} special and byte tokens`);
  const idOf = new Map(vocab.map((t, i) => [t, i]));

  // Distinct pre-tokens with their counts, as symbol id sequences
  const counts = new Map<string, number>();
  for (const text of texts) for (const w of preTokenize(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts].map(([w, count]) => ({ syms: Array.from(w, (ch) => idOf.get(ch)!), count }));

  const pairs = new Map<number, number>(); // pairKey -> occurrences weighted by word count
  const addPairs = (syms: number[], count: number) => {
    for (let i = 0; i + 1 < syms.length; i++) {
      const k = pairKey(syms[i], syms[i + 1]);
      const c = (pairs.get(k) ?? 0) + count;
      if (c === 0) pairs.delete(k);
      else pairs.set(k, c);
    }
  };
  for (const w of words) addPairs(w.syms, w.count);

  const merges: [string, string][] = [];
  while (vocab.length < opts.vocabSize && pairs.size > 0) {
    let best = -1;
    let bestCount = 0;
    for (const [k, c] of pairs) if (c > bestCount || (c === bestCount && k < best)) [best, bestCount] = [k, c];
    const a = Math.floor(best / 2097152);
    const b = best % 2097152;
    const token = vocab[a] + vocab[b];
    let id = idOf.get(token);
    if (id === undefined) {
      id = vocab.push(token) - 1;
      idOf.set(token, id);
    }
    merges.push([vocab[a], vocab[b]]);
    // Rewrite only the words holding the pair, updating pair counts by difference
    for (const w of words) {
      const s = w.syms;
      let has = false;
      for (let i = 0; i + 1 < s.length && !has; i++) has = s[i] === a && s[i + 1] === b;
      if (!has) continue;
      addPairs(s, -w.count);
      const merged: number[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          merged.push(id);
          i++;
        } else merged.push(s[i]);
      }
      w.syms = merged;
      addPairs(merged, w.count);
    }
  }
  return { vocab, merges, specialTokens: opts.specialTokens };
}

/**
 * A Hugging Face tokenizer.json for `model`: BPE with ByteLevel pre-tokenizer and decoder, specials as added tokens,
 * and when `bos` is given a TemplateProcessing post-processor that prepends it (as Llama's tokenizers do).
 */
export function tokenizerJson(model: BpeModel, opts: { bos?: string } = {}): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const special = (tok: string) => ({ SpecialToken: { id: tok, type_id: 0 } });
  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: model.specialTokens.map((content) => ({
      id: model.vocab.indexOf(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: opts.bos
      ? {
          type: 'TemplateProcessing',
          single: [special(opts.bos), seq('A', 0)],
          pair: [special(opts.bos), seq('A', 0), special(opts.bos), seq('B', 1)],
          special_tokens: { [opts.bos]: { id: opts.bos, ids: [model.vocab.indexOf(opts.bos)], tokens: [opts.bos] } },
        }
      : null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(model.vocab.map((t, i) => [t, i])),
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
