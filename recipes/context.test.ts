import { describe, expect, it } from 'vitest';
import { tinyConfig } from '../test/random-llama.ts';
import { checkSequenceLen } from './context.ts';
import { parseRecipe } from './recipe.ts';

const recipe = (over: Record<string, string> = {}) =>
  parseRecipe('base_model: ./m\nmax_steps: 1\ndatasets:\n  - path: d.jsonl\n', '/tmp/r/x.yaml', over);
const config = tinyConfig({ maxPositionEmbeddings: 256 });

describe("sequence_len against the model's context", () => {
  it("refuses a sequence_len past max_position_embeddings, naming the model's config.json and the key that allows it", () => {
    expect(() => checkSequenceLen(recipe({ sequence_len: '100000000' }), config, '/models/m')).toThrow(
      "sequence_len 100000000 is longer than the model's context: /models/m/config.json has max_position_embeddings 256 (set allow_longer_sequence_len: true to train past it)",
    );
    expect(() => checkSequenceLen(recipe({ sequence_len: '257' }), config, '/models/m')).toThrow(
      /sequence_len 257 is longer/,
    );
  });

  it('accepts sequence_len up to the context, and past it with allow_longer_sequence_len', () => {
    expect(() => checkSequenceLen(recipe({ sequence_len: '256' }), config, '/models/m')).not.toThrow();
    expect(() =>
      checkSequenceLen(recipe({ sequence_len: '4096', allow_longer_sequence_len: 'true' }), config, '/models/m'),
    ).not.toThrow();
  });
});
