import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../model/generate.ts';
import { initModel } from '../model/init.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { promptIds, runGenerate, type GenerateArgs } from './generate.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-generate-'));
const model = path.join(tmp, 'tiny');
const corpus = ['Hello world, this is a tiny corpus.', 'Give three tips for staying healthy.', 'The quick brown fox jumps over the lazy dog.'];

beforeAll(async () => {
  await initModel(model, { corpus, vocabSize: 300, seed: 3 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const args = (more: Partial<GenerateArgs> = {}): GenerateArgs => ({
  backend: 'wasm',
  quiet: true,
  model,
  prompt: 'Hello world',
  maxNewTokens: 12,
  temperature: 0,
  topK: 0,
  topP: 1,
  seed: 0,
  bos: true,
  ...more,
});

describe('ft generate', () => {
  it('streams the decoded text of exactly the tokens generate() picks for the BOS-prefixed prompt', async () => {
    const tok = await loadTokenizer(model);
    const prompt = promptIds(tok, 'Hello world', true);
    expect(prompt[0]).toBe(tok.bosId);
    const w = await loadLlama(model);
    const [expected] = await generate(w, [prompt], { maxNewTokens: 12, eosIds: [tok.eosId] });
    disposeLlama(w);

    const chunks: string[] = [];
    const r = await runGenerate(args(), (t) => chunks.push(t));
    expect(r.promptTokens).toBe(prompt.length);
    expect(r.tokens).toEqual(expected);
    expect(chunks.join('')).toBe(tok.decode(expected, { skipSpecialTokens: true }) + '\n');
    expect(chunks.length).toBeGreaterThan(2); // streamed piece by piece, not once at the end
  });

  it('--no-bos leaves BOS out of the prompt', async () => {
    const tok = await loadTokenizer(model);
    expect(promptIds(tok, 'Hello world', false)).toEqual(tok.encode('Hello world', { addSpecialTokens: false }));
    const r = await runGenerate(args({ bos: false }), () => {});
    expect(r.promptTokens).toBe(promptIds(tok, 'Hello world', false).length);
  });

  it('sampling is reproducible for a seed', async () => {
    const sampled = (seed: number) => runGenerate(args({ temperature: 1, topP: 0.95, seed }), () => {}).then((r) => r.tokens);
    expect(await sampled(7)).toEqual(await sampled(7));
  });

  it('rejects bad sampling options with a one-line error', async () => {
    await expect(runGenerate(args({ topP: 0 }), () => {})).rejects.toThrow('--top-p must be in (0, 1], got 0');
    await expect(runGenerate(args({ maxNewTokens: 0 }), () => {})).rejects.toThrow(/--max-new-tokens must be a positive integer/);
    await expect(runGenerate(args({ temperature: -1 }), () => {})).rejects.toThrow(/--temperature must be >= 0/);
  });

  it('runs as a command: `ft generate --model DIR --prompt ... --max-new-tokens 5` prints text and exits 0', async () => {
    const ft = path.join(import.meta.dirname, 'ft.js');
    const { stdout } = await promisify(execFile)(process.execPath, [ft, 'generate', '--model', model, '--prompt', 'Hello', '--max-new-tokens', '5', '--backend', 'wasm', '--quiet']);
    expect(stdout.endsWith('\n')).toBe(true);
    expect(stdout.trim().length).toBeGreaterThan(0);
  });
});
