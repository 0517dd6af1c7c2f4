// A real pretrained Llama nobody here trained: karpathy's llama2.c stories260K (TinyStories; published validation
// loss 1.2968 nats), in Hugging Face layout in ../shared/data/stories260K. Loading, tokenizer, generation, perplexity,
// and LoRA / QLoRA fine-tuning checked against what a real checkpoint must do.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset } from '../data/pipeline.ts';
import { SEED_TASKS } from '../data/testing.ts';
import { meanLoss } from '../eval/loss.ts';
import { generate, leftPaddedBatch } from '../model/generate.ts';
import { parameterCount } from '../model/init.ts';
import { denseLinear, type LinearFactory } from '../model/linear.ts';
import { disposeLlama, forward } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.ts';
import type { LlamaWeights } from '../model/types.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { train } from '../recipes/train.ts';
import type { Recipe } from '../recipes/schema.ts';
import { writeRecipe } from './train-fixtures.ts';

const DIR = path.resolve(import.meta.dirname, '../../shared/data/stories260K');
const tmp = mkdtempSync(path.join(tmpdir(), 'ft-stories-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// TinyStories-style paragraphs written for this test (not from the training corpus)
const STORIES = [
  'Once upon a time, there was a little boy named Tim. Tim had a red ball. He liked to play with his ball in the park. One day, Tim saw a big dog. The dog wanted to play too. Tim threw the ball and the dog ran to get it. They played all day and had a lot of fun.',
  'One day, a little girl named Sue went to the beach with her mom. She saw a big shell on the sand. "Mom, look at this shell!" she said. Her mom smiled and said, "It is very pretty." Sue was happy. She took the shell home and put it on her bed.',
  'There was a small cat who lived in a big house. The cat liked to sleep in the sun. One day, the cat saw a bird in the tree. The cat wanted to be friends with the bird. The bird was scared at first, but then it saw that the cat was kind. They became best friends.',
  'Ben and his sister Mia found an old box under the stairs. It was dusty and heavy. "What is inside?" Mia asked. Ben opened it slowly. Inside there were shiny stones, a map and a tiny key. They looked at the map and saw a big X near the pond behind their house.',
  'Grandpa Joe had a garden full of carrots and beans. Every morning, Lucy helped him water the plants. One morning, they saw that a rabbit had eaten some carrots. Lucy was upset, but Grandpa laughed. "The rabbit is hungry too," he said. They planted more carrots, some for them and some for the rabbit.',
  'The wind was strong and the sky was gray. Max wanted to fly his new kite, but his dad said it was too windy. Max waited by the window. After lunch, the wind became soft and the sun came out. Max and his dad ran to the hill, and the kite flew high above the trees.',
];
// Alpaca instruction text: the model has never seen "###" headers, instructions or code
const ALPACA = readFileSync(SEED_TASKS, 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .slice(0, 12)
  .map((l) => {
    const t = JSON.parse(l) as { instruction: string; instances: { input: string; output: string }[] };
    return `### Instruction:\n${t.instruction}\n\n### Input:\n${t.instances[0].input}\n\n### Response:\n${t.instances[0].output}`;
  });

let tok: Tokenizer;
let w: LlamaWeights;
beforeAll(async () => {
  tok = await loadTokenizer(DIR);
  w = await loadLlama(DIR);
});
afterAll(() => disposeLlama(w));

/** Mean next-token cross-entropy (nats) over texts, each as [bos, ...ids], from the logits' log-softmax. */
async function textLoss(model: LlamaWeights, texts: string[]): Promise<number> {
  let sum = 0;
  let n = 0;
  for (const text of texts) {
    const ids = tok.encode(text); // bos prepended
    const logp = tf.tidy(() => tf.logSoftmax(forward(model, leftPaddedBatch([ids]))));
    const rows = (await logp.data()) as Float32Array;
    logp.dispose();
    const V = model.config.vocabSize;
    for (let t = 0; t + 1 < ids.length; t++, n++) sum -= rows[t * V + ids[t + 1]];
  }
  return sum / n;
}

describe('stories260K: a real llama2.c checkpoint in Hugging Face layout', () => {
  it('loads with its published shape and the sha256 its README lists', () => {
    expect(w.config).toMatchObject({
      hiddenSize: 64,
      numHiddenLayers: 5,
      numAttentionHeads: 8,
      numKeyValueHeads: 4,
      headDim: 8,
      intermediateSize: 172,
      vocabSize: 512,
      maxPositionEmbeddings: 512,
      tieWordEmbeddings: true,
    });
    expect(parameterCount(w.config)).toBe(260_032);
    const readme = readFileSync(path.join(DIR, 'README.md'), 'utf8');
    const sha = createHash('sha256')
      .update(readFileSync(path.join(DIR, 'model.safetensors')))
      .digest('hex');
    expect(readme).toContain(`| model.safetensors | 1044992 | ${sha} |`);
  });

  it('tokenizes as @huggingface/tokenizers does and round-trips text', () => {
    const reference = new HfTokenizer(JSON.parse(readFileSync(path.join(DIR, 'tokenizer.json'), 'utf8')), {});
    for (const text of [...STORIES, ...ALPACA, 'Ünïcødé 🦙, tabs\tand "quotes"']) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      expect(ids, text).toEqual(reference.encode(text, { add_special_tokens: false }).ids);
      expect(tok.decode(ids)).toBe(text);
    }
    expect([tok.bosId, tok.eosId, tok.encode('Hi')[0]]).toEqual([1, 2, 1]);
  });

  it('continues BOS greedily with a coherent story about a little girl named Lily', async () => {
    const [ids] = await generate(w, [[tok.bosId!]], { maxNewTokens: 60, eosIds: w.config.eosTokenIds });
    const text = tok.decode(ids, { skipSpecialTokens: true });
    expect(text).toMatch(/^Once upon a time, there was a little girl named Lily\. She /);
    // English, not noise: every word is letters with ordinary punctuation
    for (const word of text.split(/\s+/).filter(Boolean)) expect(word).toMatch(/^["(]?[A-Za-z']+[.,!?;:")]*$|^$/);
  });

  it('reads story text near its published validation loss (1.30 nats) and Alpaca text far worse', async () => {
    const story = await textLoss(w, STORIES);
    const alpaca = await textLoss(w, ALPACA);
    // measured: stories 1.36 nats (perplexity 3.9; the three plainest paragraphs 0.84-1.05, the others 1.58-1.67),
    // Alpaca 4.96 nats (perplexity 143)
    expect(story).toBeGreaterThan(1.1);
    expect(story).toBeLessThan(1.6);
    expect(alpaca).toBeGreaterThan(story + 3);
  });
});

describe('stories260K: fine-tuning on the Alpaca seed tasks', () => {
  const fields = {
    base_model: DIR,
    lora_r: 8,
    lora_alpha: 16,
    lora_target_linear: true,
    datasets: [{ path: SEED_TASKS, type: 'alpaca' }],
    val_set_size: 24,
    sequence_len: 256,
    excess_length_strategy: 'truncate',
    sample_packing: true,
    micro_batch_size: 6,
    max_steps: 32,
    learning_rate: 2e-2,
    warmup_steps: 4,
    logging_steps: 10,
    eval_steps: 32,
    seed: 0,
  };

  /** Held-out response loss of the base loaded with `linear` (float or NF4), before any training. */
  async function baseLoss(recipe: Recipe, linear: LinearFactory): Promise<number> {
    const model = await loadLlama(DIR, { linear });
    const ds = await loadDataset(recipe, tok);
    try {
      return (await meanLoss(model, ds.batches({ part: 'validation' }))).loss;
    } finally {
      disposeLlama(model);
      await ds.close();
    }
  }

  // measured (32 steps of 6 x 256 tokens): LoRA 4.640 -> 4.002, QLoRA 4.722 -> 4.113 nats
  const losses: Record<string, { before: number; after: number }> = {};
  for (const adapter of ['lora', 'qlora'] as const) {
    it(`${adapter}: 32 steps lower the held-out response loss by at least 0.5 nats`, async () => {
      const { file, recipe } = writeRecipe(tmp, { ...fields, adapter, output_dir: `./${adapter}` }, `${adapter}.yaml`);
      const before = await baseLoss(recipe, adapter === 'qlora' ? quantizedLinear('nf4') : denseLinear);
      const out = await train(recipe, { recipeFile: file });
      const after = out.finalEvalLoss!;
      losses[adapter] = { before, after };
      expect(before - after, `${before} -> ${after}`).toBeGreaterThanOrEqual(0.5);
    }, 300_000);
  }

  it('the NF4 base stays within 0.2 nats of the float base on held-out text', () => {
    // measured: float base 4.640, NF4 base 4.722 nats: a gap of 0.082
    expect(Math.abs(losses.qlora.before - losses.lora.before)).toBeLessThan(0.2);
  });
});
