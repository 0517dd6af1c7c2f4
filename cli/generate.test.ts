import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../model/generate.ts';
import { initModel } from '../model/init.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { runFt, runFtOk } from '../test/run-ft.ts';
import { promptIds, runGenerate, type GenerateArgs } from './generate.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-generate-'));
const model = path.join(tmp, 'tiny');
const corpus = [
  'Hello world, this is a tiny corpus.',
  'Give three tips for staying healthy.',
  'The quick brown fox jumps over the lazy dog.',
];

beforeAll(async () => {
  await initModel(model, { corpus, vocabSize: 300, seed: 3 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const args = (more: Partial<GenerateArgs> = {}): GenerateArgs => ({
  backend: 'wasm',
  quiet: true,
  model,
  loadIn4bit: false,
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
    const sampled = (seed: number) =>
      runGenerate(args({ temperature: 1, topP: 0.95, seed }), () => {}).then((r) => r.tokens);
    expect(await sampled(7)).toEqual(await sampled(7));
  });

  it('rejects bad sampling options with a one-line error', async () => {
    await expect(runGenerate(args({ topP: 0 }), () => {})).rejects.toThrow('--top-p must be in (0, 1], got 0');
    await expect(runGenerate(args({ maxNewTokens: 0 }), () => {})).rejects.toThrow(
      /--max-new-tokens must be a positive integer/,
    );
    await expect(runGenerate(args({ temperature: -1 }), () => {})).rejects.toThrow(/--temperature must be >= 0/);
  });

  /** A copy of the model with config.json / generation_config.json fields changed. */
  function variant(name: string, config: object, generationConfig?: object): string {
    const dir = path.join(tmp, name);
    cpSync(model, dir, { recursive: true });
    const file = path.join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...config }));
    if (generationConfig) writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(generationConfig));
    return dir;
  }

  it("stops at the model's context (max_position_embeddings) and says so in one line", async () => {
    const small = variant('ctx16', { max_position_embeddings: 16 });
    const r = await runGenerate(args({ model: small, maxNewTokens: 40 }), () => {});
    expect(r.promptTokens + r.tokens.length).toBe(16);
    expect(r.contextNote).toBe(
      `ft: stopped at the model's context of 16 tokens (max_position_embeddings): ${r.promptTokens} prompt + ${16 - r.promptTokens} generated`,
    );
    expect((await runGenerate(args({ maxNewTokens: 5 }), () => {})).contextNote).toBeNull();
    const long = 'Hello world '.repeat(20);
    await expect(runGenerate(args({ model: small, prompt: long }), () => {})).rejects.toThrow(
      /prompt 0 has \d+ tokens, no room left in the model's context of 16 \(max_position_embeddings\)/,
    );
    // the CLI prints the line on stderr
    const { stderr } = await runFtOk([
      'generate',
      '--model',
      small,
      '--prompt',
      'Hello world',
      '--max-new-tokens',
      '40',
      '--quiet',
    ]);
    expect(stderr).toBe(`${r.contextNote}\n`);
  });

  it('stops at any of several eos ids: a config.json list or generation_config.json', async () => {
    const free = (await runGenerate(args({ maxNewTokens: 8 }), () => {})).tokens; // greedy, no eos met
    expect(free).toHaveLength(8);
    const stop = free[3]; // the first place this token appears is where generation must now end
    const at = free.indexOf(stop);
    const listed = variant('eos-list', { eos_token_id: [2, stop] });
    expect((await runGenerate(args({ model: listed, maxNewTokens: 8 }), () => {})).tokens).toEqual(free.slice(0, at));
    const generation = variant('eos-generation', {}, { bos_token_id: 1, eos_token_id: [2, stop] });
    expect((await runGenerate(args({ model: generation, maxNewTokens: 8 }), () => {})).tokens).toEqual(
      free.slice(0, at),
    );
    const w = await loadLlama(generation);
    expect(w.config.eosTokenIds).toEqual([2, stop]);
    disposeLlama(w);
    const bad = variant('eos-bad', {}, { eos_token_id: 'two' });
    await expect(runGenerate(args({ model: bad }), () => {})).rejects.toThrow(
      `${path.join(bad, 'generation_config.json')}: eos_token_id: expected a token id or a list of token ids, got "two"`,
    );
  });

  it('runs as a command: `ft generate --model DIR --prompt ... --max-new-tokens 5` prints text and exits 0', async () => {
    const { stdout } = await runFtOk([
      'generate',
      '--model',
      model,
      '--prompt',
      'Hello',
      '--max-new-tokens',
      '5',
      '--backend',
      'wasm',
      '--quiet',
    ]);
    expect(stdout.endsWith('\n')).toBe(true);
    expect(stdout.trim().length).toBeGreaterThan(0);
  });

  it('decodes on every core by default, as the other commands, to the tokens of one thread', async () => {
    const run = (...more: string[]) =>
      runFt(['generate', '--model', model, '--prompt', 'Hello', '--max-new-tokens', '3', '--backend', 'wasm', ...more]);
    const [all, one] = await Promise.all([run(), run('--threads', '1')]);
    const cores = availableParallelism();
    expect(all.stderr).toMatch(
      new RegExp(`^ft: backend wasm \\(@tensorflow/tfjs-backend-wasm\\), ${cores} threads?(, products on .*)?\\n`),
    );
    expect(one.stderr).toMatch(/^ft: backend wasm \(@tensorflow\/tfjs-backend-wasm\), 1 thread(, products on .*)?\n/);
    expect(all.stdout).toBe(one.stdout); // the same tokens either way
  });
});
