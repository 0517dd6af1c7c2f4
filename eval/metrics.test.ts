import { describe, expect, it } from 'vitest';
import {
  aggregateScores,
  exactMatch,
  lcsLength,
  meanScores,
  normalizeAnswer,
  rougeL,
  rougeTokens,
  scoreAll,
  scoreExample,
  tokenF1,
} from './metrics.ts';

describe('SQuAD normalization and exact match', () => {
  it('lowercases, strips punctuation and articles, collapses whitespace', () => {
    expect(normalizeAnswer('  The  Eiffel-Tower, in   PARIS! ')).toBe('eiffeltower in paris');
    expect(normalizeAnswer('An apple a day')).toBe('apple day');
    expect(normalizeAnswer('theory and thematic')).toBe('theory and thematic'); // articles only as whole words
  });

  it('matches after normalization only', () => {
    expect(exactMatch('The Beatles.', 'beatles')).toBe(1);
    expect(exactMatch('Beatles band', 'beatles')).toBe(0);
  });
});

describe('token F1', () => {
  it('counts overlapping tokens with multiplicity', () => {
    // pred [cat, sat, on, mat] vs gold [cat, sat, on, red, mat, today]: 4 shared -> P 1, R 4/6, F1 0.8
    expect(tokenF1('The cat sat on the mat', 'a cat sat on the red mat today')).toBeCloseTo(0.8, 12);
    // pred [to, to, be] vs gold [to, be, or, not, to, be]: shared to x2 + be = 3 -> P 1, R 0.5, F1 2/3
    expect(tokenF1('to to be', 'to be or not to be')).toBeCloseTo(2 / 3, 12);
    expect(tokenF1('yes', 'no')).toBe(0);
  });

  it('empty answers: both empty = 1, one empty = 0', () => {
    expect(tokenF1('', 'the')).toBe(1); // "the" normalizes to nothing
    expect(tokenF1('', 'paris')).toBe(0);
  });
});

describe('ROUGE-L (rouge-score rougeL)', () => {
  it('tokenizes like rouge-score: lowercase alphanumeric runs', () => {
    expect(rougeTokens("It's 3:45pm, Dr. O'Neil!")).toEqual(['it', 's', '3', '45pm', 'dr', 'o', 'neil']);
  });

  it('longest common subsequence', () => {
    expect(lcsLength(['a', 'b', 'c', 'b', 'd', 'a', 'b'], ['b', 'd', 'c', 'a', 'b', 'a'])).toBe(4); // CLRS: bcba
    expect(lcsLength([], ['a'])).toBe(0);
  });

  it('the rouge-score README pair', () => {
    // reference 9 tokens, prediction 8, LCS "the quick brown jumps the" = 5
    const s = rougeL('The quick brown dog jumps on the log.', 'The quick brown fox jumps over the lazy dog');
    expect(s.precision).toBeCloseTo(5 / 8, 12);
    expect(s.recall).toBeCloseTo(5 / 9, 12);
    expect(s.fmeasure).toBeCloseTo(0.5882352941, 9);
  });

  it('word order matters, unlike token F1', () => {
    expect(rougeL('police killed the gunman', 'the gunman killed police').fmeasure).toBeCloseTo(0.5, 12); // LCS 2 of 4
    expect(tokenF1('police killed the gunman', 'the gunman killed police')).toBe(1);
    expect(rougeL('', 'anything')).toEqual({ precision: 0, recall: 0, fmeasure: 0 });
  });
});

describe('aggregates', () => {
  it('takes the best of several references and averages over examples', () => {
    expect(scoreExample('Paris', ['London', 'paris.'])).toEqual({ exact_match: 1, f1: 1, rougeL: 1 });
    const agg = scoreAll(['Paris', 'blue sky'], ['paris', 'the sky is blue']);
    // example 2: EM 0; F1 pred [blue, sky] gold [sky, is, blue] -> P 1 R 2/3 F 0.8; ROUGE-L LCS 1 -> P 1/2 R 1/4 F 1/3
    expect(agg.count).toBe(2);
    expect(agg.exact_match).toBeCloseTo(0.5, 12);
    expect(agg.f1).toBeCloseTo(0.9, 12);
    expect(agg.rougeL).toBeCloseTo((1 + 1 / 3) / 2, 12);
    expect(aggregateScores([])).toEqual({ exact_match: 0, f1: 0, rougeL: 0, count: 0 });
    expect(() => scoreAll(['a'], [])).toThrow('1 predictions for 0 references');
  });
});

describe('meanScores', () => {
  it('averages each named score over the rows that have it', () => {
    expect(
      meanScores([
        { exact_match: 1, f1: 0.5 },
        { exact_match: 0, f1: 1, mine: 3 },
      ]),
    ).toEqual({ exact_match: 0.5, f1: 0.75, mine: 3 });
    expect(meanScores([])).toEqual({});
  });
});
