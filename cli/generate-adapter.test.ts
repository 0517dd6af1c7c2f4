import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { attachLora } from '../adapters/lora.ts';
import { loadPeftAdapter, savePeftAdapter } from '../adapters/peft.ts';
import { generate } from '../model/generate.ts';
import { initModel } from '../model/init.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { promptIds, runGenerate, type GenerateArgs } from './generate.ts';
import { runFtOk } from '../test/run-ft.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-generate-adapter-'));
const model = path.join(tmp, 'tiny');
const adapter = path.join(tmp, 'adapter');

beforeAll(async () => {
  await initModel(model, {
    corpus: ['Hello world, this is a tiny corpus.', 'Give three tips for staying healthy.'],
    vocabSize: 300,
    seed: 3,
  });
  const w = await loadLlama(model);
  const a = attachLora(w, { r: 4, alpha: 32, dropout: 0, targetModules: 'all-linear', useRslora: false }, 1);
  let seed = 1;
  for (const v of a.trainableVariables()) v.assign(tf.randomNormal(v.shape, 0, 1, 'float32', seed++));
  await savePeftAdapter(adapter, a, model);
  disposeLlama(w);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

it('ft generate --adapter generates with the PEFT adapter applied', async () => {
  const args: GenerateArgs = {
    backend: 'wasm',
    quiet: true,
    model,
    adapter,
    loadIn4bit: false,
    prompt: 'Hello world',
    maxNewTokens: 10,
    temperature: 0,
    topK: 0,
    topP: 1,
    seed: 0,
    bos: true,
  };
  const tok = await loadTokenizer(model);
  const prompt = promptIds(tok, 'Hello world', true);
  const w = await loadLlama(model);
  const [plain] = await generate(w, [prompt], { maxNewTokens: 10, eosIds: [] });
  await loadPeftAdapter(adapter, w);
  const [adapted] = await generate(w, [prompt], { maxNewTokens: 10, eosIds: [] });
  disposeLlama(w);
  expect(adapted).not.toEqual(plain); // the adapter changes what is generated
  const r = await runGenerate({ ...args, maxNewTokens: 10 }, () => {});
  expect(r.tokens).toEqual(adapted.slice(0, r.tokens.length));
  expect(r.tokens.length).toBeGreaterThan(0);
});

it('ft generate --adapter --load-in-4bit generates as the NF4 base QLoRA trained against, with the adapter', async () => {
  const tok = await loadTokenizer(model);
  const prompt = promptIds(tok, 'Hello world', true);
  const w = await loadLlama(model, { linear: quantizedLinear('nf4') });
  await loadPeftAdapter(adapter, w);
  const [expected] = await generate(w, [prompt], { maxNewTokens: 10, eosIds: [] });
  disposeLlama(w);
  const args: GenerateArgs = {
    backend: 'wasm',
    quiet: true,
    model,
    adapter,
    loadIn4bit: true,
    prompt: 'Hello world',
    maxNewTokens: 10,
    temperature: 0,
    topK: 0,
    topP: 1,
    seed: 0,
    bos: true,
  };
  const r = await runGenerate(args, () => {});
  expect(r.tokens.length).toBeGreaterThan(0);
  expect(r.tokens).toEqual(expected.slice(0, r.tokens.length));
  // and the command line takes the flag
  const { stdout } = await runFtOk([
    'generate',
    '--model',
    model,
    '--adapter',
    adapter,
    '--load-in-4bit',
    '--prompt',
    'Hello world',
    '--max-new-tokens',
    '10',
    '--quiet',
  ]);
  expect(stdout).toBe(tok.decode(r.tokens, { skipSpecialTokens: true }) + '\n');
});
