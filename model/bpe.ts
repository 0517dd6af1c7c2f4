// BPE training, byte-level GPT-2 style (byte -> printable unicode map, regex pre-tokenization, ByteLevel decoder) or
// SentencePiece style as Llama 2 ships it (▁ for spaces, byte fallback), emitting a standard Hugging Face
// tokenizer.json. Hand-written: no maintained JS library trains BPE (@huggingface/tokenizers in JS only runs them).

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

export type BpeStyle = 'byte-level' | 'sentencepiece';

export interface BpeModel {
  style: BpeStyle;
  /**
   * id -> token: special tokens first, then the 256 byte symbols in byte order (byte-level: GPT-2's characters;
   * sentencepiece: `<0x00>`... fallback tokens followed by the corpus's characters), then one token per new merge.
   */
  vocab: string[];
  /** In rank order. */
  merges: [string, string][];
  specialTokens: string[];
}

const encoder = new TextEncoder();

/** The byte-level symbols of each pre-token of `text`. */
export function preTokenize(text: string): string[] {
  return (text.match(GPT2_PATTERN) ?? []).map((piece) =>
    Array.from(encoder.encode(piece), (b) => BYTE_TO_UNICODE[b]).join(''),
  );
}

/** SentencePiece's mark for a space. */
const SPM_SPACE = '\u2581';

/** A text's SentencePiece words: spaces as ▁, one ▁ prepended, each word a run of ▁ and the characters after it. */
function spmWords(text: string): string[] {
  return (SPM_SPACE + text.replaceAll(' ', SPM_SPACE)).match(/\u2581*[^\u2581]+|\u2581+/g) ?? [];
}

const BYTE_FALLBACK = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);

/** A pair of symbol ids as one map key (ids stay below 2^21). */
const pairKey = (a: number, b: number) => a * 2097152 + b;

/**
 * Learns merges until the vocabulary (specials + 256 bytes + merges) reaches `vocabSize` or no adjacent pair is left.
 * Each step merges the most frequent adjacent pair, ties going to the smallest (left id, right id): deterministic.
 */
export function trainBpe(
  texts: Iterable<string>,
  opts: { vocabSize: number; specialTokens: string[]; style?: BpeStyle },
): BpeModel {
  const style = opts.style ?? 'byte-level';
  // Distinct pre-tokens with their counts
  const counts = new Map<string, number>();
  for (const text of texts)
    for (const w of style === 'byte-level' ? preTokenize(text) : spmWords(text))
      counts.set(w, (counts.get(w) ?? 0) + 1);
  const chars =
    style === 'byte-level'
      ? BYTE_TO_UNICODE
      : [...BYTE_FALLBACK, ...[...new Set([...counts.keys()].flatMap((w) => Array.from(w)))].sort()];
  const vocab = [...opts.specialTokens, ...chars];
  if (opts.vocabSize < vocab.length)
    throw new RangeError(`vocab size ${opts.vocabSize} is below the ${vocab.length} special and base tokens`);
  const idOf = new Map(vocab.map((t, i) => [t, i]));

  // as symbol id sequences
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
  return { style, vocab, merges, specialTokens: opts.specialTokens };
}

/**
 * A Hugging Face tokenizer.json for `model`, specials as added tokens, and when `bos` is given a TemplateProcessing
 * post-processor that prepends it (as Llama's tokenizers do). Byte-level: ByteLevel pre-tokenizer and decoder.
 * SentencePiece: Llama 2's layout (Prepend ▁ + Replace ' ' normalizer, no pre-tokenizer, byte fallback, and the
 * decoder that undoes them).
 */
export function tokenizerJson(model: BpeModel, opts: { bos?: string } = {}): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const spm = model.style === 'sentencepiece';
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
    normalizer: spm
      ? {
          type: 'Sequence',
          normalizers: [
            { type: 'Prepend', prepend: SPM_SPACE },
            { type: 'Replace', pattern: { String: ' ' }, content: SPM_SPACE },
          ],
        }
      : null,
    pre_tokenizer: spm ? null : byteLevel,
    post_processor: opts.bos
      ? {
          type: 'TemplateProcessing',
          single: [special(opts.bos), seq('A', 0)],
          pair: [special(opts.bos), seq('A', 0), special(opts.bos), seq('B', 1)],
          special_tokens: { [opts.bos]: { id: opts.bos, ids: [model.vocab.indexOf(opts.bos)], tokens: [opts.bos] } },
        }
      : null,
    decoder: spm
      ? {
          type: 'Sequence',
          decoders: [
            { type: 'Replace', pattern: { String: SPM_SPACE }, content: ' ' },
            { type: 'ByteFallback' },
            { type: 'Fuse' },
            { type: 'Strip', content: ' ', start: 1, stop: 0 },
          ],
        }
      : byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: spm && model.vocab.includes('<unk>') ? '<unk>' : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: spm,
      byte_fallback: spm,
      ignore_merges: false,
      vocab: Object.fromEntries(model.vocab.map((t, i) => [t, i])),
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
