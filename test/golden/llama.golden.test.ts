// ft's forward pass, loss and greedy decoding against an independent PyTorch reference
// (test/golden/llama_reference.py, run once; its outputs are committed under test/fixtures/golden/).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { generate } from '../../model/generate.ts';
import { causalLmLoss, disposeLlama, forward } from '../../model/llama.ts';
import { loadLlama } from '../../model/load.ts';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'golden');

interface Golden {
  B: number;
  T: number;
  ids: number[][];
  segments: number[][];
  positions: number[][];
  logits: number[][][]; // [B, T, vocab]
  labels: number[][];
  loss: number;
  greedy: { prompt: number[]; tokens: number[] };
}

describe.each(['llama-gqa', 'llama3-tied', 'qwen2-bias'])('%s matches the PyTorch reference', (name) => {
  const golden: Golden = JSON.parse(readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'));
  const batch = {
    B: golden.B,
    T: golden.T,
    ids: Int32Array.from(golden.ids.flat()),
    segments: Int32Array.from(golden.segments.flat()),
    positions: Int32Array.from(golden.positions.flat()),
  };
  const labels = Int32Array.from(golden.labels.flat());

  it('logits at every real position (padding and packed rows included) within 1e-4, and the loss', async () => {
    const w = await loadLlama(path.join(FIXTURES, name));
    const logits = forward(w, batch);
    const got = logits.arraySync();
    let maxDiff = 0;
    let compared = 0;
    for (let b = 0; b < golden.B; b++) {
      for (let t = 0; t < golden.T; t++) {
        if (golden.segments[b][t] === 0) continue;
        golden.logits[b][t].forEach((x, v) => (maxDiff = Math.max(maxDiff, Math.abs(x - got[b][t][v]))));
        compared++;
      }
    }
    expect(compared).toBe(26);
    expect(maxDiff).toBeLessThan(1e-4);
    if (process.env.FT_GOLDEN_VERBOSE) console.log(`${name}: max |logit diff| ${maxDiff.toExponential(2)}`);
    const { loss, count } = causalLmLoss(logits, labels);
    expect(count).toBe(labels.filter((y) => y !== -100).length);
    expect(Math.abs(loss.dataSync()[0] - golden.loss)).toBeLessThan(1e-5);
    tf.dispose([logits, loss]);
    const [greedy] = await generate(w, [golden.greedy.prompt], { maxNewTokens: golden.greedy.tokens.length });
    expect(greedy).toEqual(golden.greedy.tokens);
    disposeLlama(w);
  });

  it("causalLmLoss on the reference logits equals torch's cross_entropy(ignore_index=-100)", () => {
    const logits = tf.tensor3d(golden.logits.flat(2), [golden.B, golden.T, golden.logits[0][0].length]);
    const { loss } = causalLmLoss(logits, labels);
    expect(Math.abs(loss.dataSync()[0] - golden.loss)).toBeLessThan(1e-5);
    tf.dispose([logits, loss]);
  });
});
