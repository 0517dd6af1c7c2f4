// ft's GGUF files run in real llama.cpp (node-llama-cpp's CPU build): tokenization, greedy tokens and next-token
// distributions against ft's own tokenizer and forward pass, for a random tiny model (byte-level BPE, GQA; also as
// qwen2 with q/k/v biases and as llama with llama3 RoPE scaling) and the real pretrained stories260K (SentencePiece
// BPE, tied embeddings). f32 files must give ft's tokens with log-probabilities within F32_TOL; q8_0 within Q8_TOL.
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter } from '../adapters/peft.ts';
import { configJson, readConfig } from '../model/config.ts';
import { generate } from '../model/generate.ts';
import { synthCorpus } from '../data/synth.ts';
import { initModel, randomTensors } from '../model/init.ts';
import { disposeLlama, forward } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import type { LlamaConfig } from '../model/types.ts';
import { greedy, llamaCpp, llamaCppWarnings, loadGguf, type Greedy } from '../test/llama-cpp.ts';
import { writeRandomAdapter } from '../test/random-adapter.ts';
import { exportModelGguf } from './gguf-model.ts';
import { exportLoraGguf } from './gguf.ts';
import type { GgufModelType } from './gguf-quant.ts';

/** Largest |log p(llama.cpp) - log p(ft)| over the vocabulary at every step, f32 weights and f32 KV cache. */
const F32_TOL = 1e-4;
/**
 * The same for q8_0 (measured 0.06-0.26): llama.cpp also quantizes each matmul's activations to 8-bit blocks, so this
 * is more than the weights' own rounding costs (ft on the dequantized q8_0 weights: 0.07 on the tiny model).
 */
const Q8_TOL = 0.3;
/** q4_0 of stories260K (measured 1.48): loads and keeps the greedy tokens, nothing finer is claimed. */
const Q4_TOL = 2;
const STEPS = 6;
const LOG_P_MIN = Math.log(1e-3);
const STORIES = path.resolve(import.meta.dirname, '../../shared/data/stories260K');

const llama = await llamaCpp();
const skip = typeof llama === 'string';
if (skip) console.warn(`skipping the llama.cpp checks: ${llama}`);

let root: string;
beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-llamacpp-'));
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

/** ft's greedy tokens (model/generate.ts) and the log-softmax before each of them (one forward pass over prompt + tokens). */
async function ftGreedy(modelDir: string, prompt: number[], adapter?: string): Promise<Greedy> {
  const w = await loadLlama(modelDir);
  try {
    if (adapter) await loadPeftAdapter(adapter, w);
    const [tokens] = await generate(w, [prompt], { maxNewTokens: STEPS, temperature: 0, eosIds: [] });
    const ids = [...prompt, ...tokens.slice(0, -1)];
    const batch = {
      B: 1,
      T: ids.length,
      ids: Int32Array.from(ids),
      segments: new Int32Array(ids.length).fill(1),
      positions: Int32Array.from(ids, (_, i) => i),
    };
    const lp = tf.tidy(() => tf.logSoftmax(tf.squeeze(forward(w, batch), [0])).arraySync() as number[][]);
    return { tokens, logprobs: lp.slice(prompt.length - 1).map((row) => Float64Array.from(row)) };
  } finally {
    disposeLlama(w);
  }
}

/** Largest |log p(a) - log p(b)| at any step over the tokens `b` (ft) gives a probability of at least 1e-3. */
function maxLogprobDiff(a: Greedy, b: Greedy): number {
  let worst = 0;
  b.logprobs.forEach((row, s) =>
    row.forEach((v, i) => v >= LOG_P_MIN && (worst = Math.max(worst, Math.abs(v - a.logprobs[s][i])))),
  );
  return worst;
}

/**
 * A rounded file against ft: the same greedy tokens, except that they may part where ft's top token leads llama.cpp's
 * choice by less than 2·tol (an error of tol per log-probability can swap them there); log-probabilities within tol
 * at every step up to that point (after it the two continue different texts).
 */
function expectCloseGreedy(got: Greedy, want: Greedy, tol: number): void {
  let steps = want.tokens.length;
  for (let s = 0; s < want.tokens.length; s++) {
    if (got.tokens[s] === want.tokens[s]) continue;
    const row = want.logprobs[s];
    const margin = row[want.tokens[s]] - row[got.tokens[s]];
    expect(margin, `step ${s}: llama.cpp took ${got.tokens[s]}, ft ${want.tokens[s]}`).toBeLessThan(2 * tol);
    steps = s + 1;
    break;
  }
  const upTo = (g: Greedy) => ({ tokens: g.tokens.slice(0, steps), logprobs: g.logprobs.slice(0, steps) });
  expect(maxLogprobDiff(upTo(got), upTo(want))).toBeLessThan(tol);
}

/** Exports `modelDir` (+ adapter merged) as `outType`, runs it greedily in llama.cpp (optionally with a LoRA GGUF). */
async function runGguf(
  modelDir: string,
  prompt: number[],
  outType: GgufModelType,
  opts: { merge?: string; lora?: string } = {},
): Promise<Greedy> {
  const file = path.join(
    root,
    `${path.basename(modelDir)}-${outType}-${opts.merge ? 'merged' : 'base'}-${Math.random().toString(36).slice(2)}.gguf`,
  );
  await exportModelGguf({ model: modelDir, adapter: opts.merge, out: file, outType });
  const model = await loadGguf(llama as Exclude<typeof llama, string>, file);
  try {
    const { vocabSize } = await readConfig(modelDir);
    return await greedy(model, prompt, STEPS, vocabSize, opts.lora);
  } finally {
    await model.dispose();
  }
}

async function promptIds(modelDir: string, text: string): Promise<number[]> {
  const tok = await loadTokenizer(modelDir);
  return [tok.bosId!, ...tok.encode(text, { addSpecialTokens: false })];
}

describe.skipIf(skip)('ft GGUF in llama.cpp', () => {
  let tiny: string;
  let tinyAdapter: string;
  let storiesAdapter: string;
  beforeAll(async () => {
    tiny = path.join(root, 'tiny');
    await initModel(tiny, { vocabSize: 400, initStd: 0.1, seed: 3, corpus: synthCorpus() });
    tinyAdapter = path.join(root, 'tiny-adapter');
    await writeRandomAdapter(tinyAdapter, await readConfig(tiny), { seed: 5, stdB: 0.02 });
    storiesAdapter = path.join(root, 'stories-adapter');
    await writeRandomAdapter(storiesAdapter, await readConfig(STORIES), { seed: 6, stdB: 0.04 });
  });

  const texts = [
    'Give three tips for staying healthy.',
    'Once upon a time,  there was\na little girl named Lily.',
    "It's 2024: don't   stop!\n\n  Über café ☕ naïve",
  ];

  it("loads without a warning and tokenizes as ft's tokenizer does (byte-level BPE and SentencePiece-style BPE)", async () => {
    for (const dir of [tiny, STORIES]) {
      const file = path.join(root, `${path.basename(dir)}-vocab.gguf`);
      await exportModelGguf({ model: dir, out: file, outType: 'f32' });
      const model = await loadGguf(llama as Exclude<typeof llama, string>, file);
      expect(llamaCppWarnings(), `llama.cpp's warnings on ${file}`).toEqual([]);
      const tok = await loadTokenizer(dir);
      for (const text of texts)
        expect([...model.tokenize(text, false)], `${dir}: ${JSON.stringify(text)}`).toEqual(
          tok.encode(text, { addSpecialTokens: false }),
        );
      await model.dispose();
    }
  });

  for (const [name, dir] of [
    ['the tiny random model', () => tiny],
    ['stories260K', () => STORIES],
  ] as const) {
    describe(name, () => {
      let prompt: number[];
      let base: Greedy;
      let adapted: Greedy;
      beforeAll(async () => {
        prompt = await promptIds(dir(), name === 'stories260K' ? 'Once upon a time, there was' : 'Give three tips');
        base = await ftGreedy(dir(), prompt);
        adapted = await ftGreedy(dir(), prompt, name === 'stories260K' ? storiesAdapter : tinyAdapter);
      });
      const adapterOf = () => (name === 'stories260K' ? storiesAdapter : tinyAdapter);

      it('f32 base GGUF: the greedy tokens of ft generate, log-probabilities within 1e-4', async () => {
        const got = await runGguf(dir(), prompt, 'f32');
        expect(got.tokens).toEqual(base.tokens);
        expect(maxLogprobDiff(got, base)).toBeLessThan(F32_TOL);
      });

      it("base GGUF + ft's LoRA GGUF: the tokens of ft generate --adapter", async () => {
        const lora = path.join(root, `${name}-lora.gguf`);
        await exportLoraGguf({ adapterDir: adapterOf(), out: lora, baseDir: dir() });
        const got = await runGguf(dir(), prompt, 'f32', { lora });
        expect(adapted.tokens).not.toEqual(base.tokens);
        expect(got.tokens).toEqual(adapted.tokens);
        expect(maxLogprobDiff(got, adapted)).toBeLessThan(F32_TOL);
      });

      it('merged GGUF: the tokens of base + LoRA', async () => {
        const got = await runGguf(dir(), prompt, 'f32', { merge: adapterOf() });
        expect(got.tokens).toEqual(adapted.tokens);
        expect(maxLogprobDiff(got, adapted)).toBeLessThan(F32_TOL);
      });

      it(`merged q8_0 GGUF: the same greedy tokens but at near-ties, log-probabilities within ${Q8_TOL}`, async () => {
        expectCloseGreedy(await runGguf(dir(), prompt, 'q8_0', { merge: adapterOf() }), adapted, Q8_TOL);
        expectCloseGreedy(await runGguf(dir(), prompt, 'q8_0'), base, Q8_TOL);
      });
    });
  }

  it('q4_0 stories260K: llama.cpp loads it and keeps the greedy tokens', async () => {
    const prompt = await promptIds(STORIES, 'Once upon a time, there was');
    const want = await ftGreedy(STORIES, prompt);
    const got = await runGguf(STORIES, prompt, 'q4_0');
    expect(got.tokens).toEqual(want.tokens);
    expect(maxLogprobDiff(got, want)).toBeLessThan(Q4_TOL);
  });

  it("qwen2 (q/k/v biases, no q/k permutation) and llama3 RoPE scaling (rope_freqs) give ft's tokens", async () => {
    const tinyConfig = await readConfig(tiny);
    const { raw: _raw, ...shape } = tinyConfig;
    const variants: [string, LlamaConfig][] = [
      ['qwen2', { ...tinyConfig, architecture: 'Qwen2ForCausalLM', attentionBias: true }],
      [
        'llama3-rope',
        {
          ...tinyConfig,
          ropeScaling: {
            type: 'llama3',
            factor: 8,
            lowFreqFactor: 1,
            highFreqFactor: 4,
            originalMaxPositionEmbeddings: 32,
          },
        },
      ],
    ];
    for (const [label, c] of variants) {
      const dir = path.join(root, label);
      await fsp.mkdir(dir);
      const { raw: _r, ...rest } = c;
      await fsp.writeFile(
        path.join(dir, 'config.json'),
        JSON.stringify(configJson({ ...shape, ...rest }, { torch_dtype: 'float32' })),
      );
      await writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(c, 11, 0.1));
      for (const f of ['tokenizer.json', 'tokenizer_config.json'])
        await fsp.copyFile(path.join(tiny, f), path.join(dir, f));
      const prompt = await promptIds(dir, 'Write a short poem about the sea and the sky');
      const want = await ftGreedy(dir, prompt);
      const got = await runGguf(dir, prompt, 'f32');
      expect(got.tokens, label).toEqual(want.tokens);
      expect(maxLogprobDiff(got, want), label).toBeLessThan(F32_TOL);
    }
  });
});
