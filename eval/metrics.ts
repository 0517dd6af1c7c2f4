// Text-generation metrics: SQuAD-style normalized exact match and token F1 (the official SQuAD v2 eval script),
// and ROUGE-L as Google's rouge-score computes `rougeL` (LCS over tokens, no stemming, F = 2PR / (P + R)).

/** SQuAD normalize_answer: lowercase, drop ASCII punctuation, drop articles a/an/the, collapse whitespace. */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g, '')
    .replace(/\b(a|an|the)\b/g, ' ')
    .split(/\s+/)
    .filter(Boolean)
    .join(' ');
}

const squadTokens = (s: string): string[] => normalizeAnswer(s).split(' ').filter(Boolean);

/** 1 when the normalized strings are equal, else 0. */
export function exactMatch(prediction: string, reference: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(reference) ? 1 : 0;
}

/** Harmonic mean of precision and recall; 0 when both are 0. */
function f1Of(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

/** SQuAD token F1 over normalized tokens (bag-of-words overlap); two empty answers score 1, one empty scores 0. */
export function tokenF1(prediction: string, reference: string): number {
  const pred = squadTokens(prediction);
  const gold = squadTokens(reference);
  if (pred.length === 0 || gold.length === 0) return pred.length === gold.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of gold) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of pred) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same++;
      counts.set(t, c - 1);
    }
  }
  return same === 0 ? 0 : f1Of(same / pred.length, same / gold.length);
}

/** rouge-score's default tokenizer: lowercase, non-[a-z0-9] become spaces, split on whitespace. */
export function rougeTokens(s: string): string[] {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .split(' ')
    .filter(Boolean);
}

/** Length of the longest common subsequence of two token lists (O(n·m) dynamic programming, one row kept). */
export function lcsLength(a: string[], b: string[]): number {
  const row = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    let diag = 0; // row[j - 1] of the previous i
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = a[i - 1] === b[j - 1] ? diag + 1 : Math.max(up, row[j - 1]);
      diag = up;
    }
  }
  return row[b.length];
}

export interface PRF {
  precision: number;
  recall: number;
  fmeasure: number;
}

/** ROUGE-L: precision = LCS / |prediction|, recall = LCS / |reference|; all 0 when either side has no tokens. */
export function rougeL(prediction: string, reference: string): PRF {
  const pred = rougeTokens(prediction);
  const ref = rougeTokens(reference);
  if (pred.length === 0 || ref.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcs = lcsLength(ref, pred);
  const precision = lcs / pred.length;
  const recall = lcs / ref.length;
  return { precision, recall, fmeasure: f1Of(precision, recall) };
}

/** Per-example scores; with several references each metric takes its best reference, as the SQuAD script does. */
export interface ExampleScores {
  exact_match: number;
  f1: number;
  rougeL: number; // F-measure
}

export function scoreExample(prediction: string, references: string | string[]): ExampleScores {
  const refs = typeof references === 'string' ? [references] : references;
  if (refs.length === 0) throw new Error('scoreExample: no reference answers');
  const best = (f: (r: string) => number) => Math.max(...refs.map(f));
  return {
    exact_match: best((r) => exactMatch(prediction, r)),
    f1: best((r) => tokenF1(prediction, r)),
    rougeL: best((r) => rougeL(prediction, r).fmeasure),
  };
}

/** Means over a set of examples (each in [0, 1]), plus the count. */
export interface AggregateScores extends ExampleScores {
  count: number;
}

export function aggregateScores(examples: ExampleScores[]): AggregateScores {
  const n = examples.length;
  const mean = (k: keyof ExampleScores) => (n === 0 ? 0 : examples.reduce((s, e) => s + e[k], 0) / n);
  return { exact_match: mean('exact_match'), f1: mean('f1'), rougeL: mean('rougeL'), count: n };
}

/** Scores predictions against references pairwise and averages. */
export function scoreAll(predictions: string[], references: (string | string[])[]): AggregateScores {
  if (predictions.length !== references.length) {
    throw new Error(`scoreAll: ${predictions.length} predictions for ${references.length} references`);
  }
  return aggregateScores(predictions.map((p, i) => scoreExample(p, references[i])));
}

/** Per-key means over rows of named scores (built-in and user metrics alike); a key averages over the rows that have it. */
export function meanScores(rows: Record<string, number>[]): Record<string, number> {
  const sums = new Map<string, { sum: number; n: number }>();
  for (const row of rows) {
    for (const [k, v] of Object.entries(row)) {
      const s = sums.get(k) ?? { sum: 0, n: 0 };
      s.sum += v;
      s.n++;
      sums.set(k, s);
    }
  }
  return Object.fromEntries([...sums].map(([k, s]) => [k, s.sum / s.n]));
}
