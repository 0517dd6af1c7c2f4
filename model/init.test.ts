import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthCorpus } from '../data/synth.ts';
import { writeRandomModel } from '../test/random-llama.ts';
import { readConfig } from './config.ts';
import { initModel, parameterCount } from './init.ts';
import { loadLlama } from './load.ts';
import { SafetensorsFile } from './safetensors.ts';
import { loadTokenizer } from './tokenizer.ts';
import { runFtOk } from '../test/run-ft.ts';

const FILES = [
  '.ft-output',
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'tokenizer.json',
  'tokenizer_config.json',
];

// ft's default tokenizer corpus: its synth tasks in the Alpaca template (what ft init-model and base_model_init use)
const corpus = synthCorpus();

let tmp: string;
let vocab: number;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-init-'));
  vocab = (await initModel(path.join(tmp, 'a'), { seed: 0, corpus })).vocabSize;
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('initModel (tiny preset)', () => {
  it('writes a Hugging Face model folder with the tiny shape', async () => {
    expect((await fsp.readdir(path.join(tmp, 'a'))).sort()).toEqual(FILES);
    const c = await readConfig(path.join(tmp, 'a'));
    expect(c).toMatchObject({
      architecture: 'LlamaForCausalLM',
      hiddenSize: 64,
      numHiddenLayers: 4,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      intermediateSize: 176,
      vocabSize: vocab,
      maxPositionEmbeddings: 1024,
      tieWordEmbeddings: false,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      bosTokenId: 1,
      eosTokenIds: [2],
    });
    expect(c.raw).toMatchObject({ model_type: 'llama', torch_dtype: 'float32' });
    expect(vocab).toBeGreaterThan(600); // the synth text runs out of merges before the preset's 1024
    expect(vocab).toBeLessThanOrEqual(1024);
    expect(parameterCount(c)).toBe(2 * vocab * 64 + 4 * (2 * 64 + 64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 176) + 64);
  });

  it('is byte-identical for the same seed and differs in the weights only for another seed', async () => {
    await initModel(path.join(tmp, 'b'), { seed: 0, corpus });
    await initModel(path.join(tmp, 'c'), { seed: 1, corpus });
    for (const f of FILES) {
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => fsp.readFile(path.join(tmp, d, f))));
      expect(Buffer.compare(a, b), f).toBe(0);
      expect(Buffer.compare(a, c) === 0, f).toBe(f !== 'model.safetensors');
    }
  });

  it('initializes projections normal(0, 0.02) and norms to one', async () => {
    const f = await SafetensorsFile.open(path.join(tmp, 'a', 'model.safetensors'));
    const w = (await f.read('model.layers.2.mlp.down_proj.weight')).data;
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
    expect(Math.abs(mean)).toBeLessThan(0.001);
    expect(std).toBeGreaterThan(0.019);
    expect(std).toBeLessThan(0.021);
    expect(Array.from((await f.read('model.norm.weight')).data)).toEqual(new Array(64).fill(1));
    expect(f.info('lm_head.weight').dtype).toBe('F32');
    await f.close();
  });

  it('loads as a model and a tokenizer whose ids cover byte-level merges learned from the synth tasks and the Alpaca template', async () => {
    const m = await loadLlama(path.join(tmp, 'a'));
    expect(m.layers.length).toBe(4);
    expect(m.lmHead?.outFeatures).toBe(vocab);
    const tok = await loadTokenizer(path.join(tmp, 'a'));
    expect([tok.vocabSize, tok.bosId, tok.eosId, tok.padId, tok.addBos, tok.addEos]).toEqual([
      vocab,
      1,
      2,
      3,
      true,
      false,
    ]);
    const text = 'Below is an instruction that describes a task. Reverse the order of the words.';
    const ids = tok.encode(text);
    expect(ids[0]).toBe(1);
    expect(ids.length).toBeLessThan(0.3 * text.length); // real merges, not one token per character
    expect(tok.tokenToId('Ġinstruction')).not.toBeNull();
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    const odd = 'Ünïcødé 🦙 text, tabs\tand "quotes"';
    expect(tok.decode(tok.encode(odd, { addSpecialTokens: false }))).toBe(odd);
    expect(tok.chatTemplate).toContain('### Response:');
  });

  it('honours --vocab-size and rejects one too small for the bytes', async () => {
    const c = await initModel(path.join(tmp, 'v'), { vocabSize: 512, corpus });
    expect(c.vocabSize).toBe(512);
    expect((await loadTokenizer(path.join(tmp, 'v'))).vocabSize).toBe(512);
    await expect(initModel(path.join(tmp, 'w'), { vocabSize: 100, corpus })).rejects.toThrow(
      '--vocab-size 100 is too small (expected an integer >= 260: 4 specials + 256 bytes)',
    );
  });

  it("replaces an earlier model folder it wrote but refuses any other non-empty folder, a real model's included", async () => {
    await initModel(path.join(tmp, 'again'), { seed: 0, corpus });
    await initModel(path.join(tmp, 'again'), { seed: 1, corpus });
    const other = path.join(tmp, 'other');
    await fsp.mkdir(other);
    await fsp.writeFile(path.join(other, 'notes.txt'), 'keep me');
    await expect(initModel(other, { corpus })).rejects.toThrow(
      `${other}: is not empty and was not written by ft (no .ft-output); pass --overwrite to replace it`,
    );
    expect(await fsp.readFile(path.join(other, 'notes.txt'), 'utf8')).toBe('keep me');
    // a model folder from elsewhere (config.json and weights) is someone's model, not ft's to replace
    const real = path.join(tmp, 'real');
    await writeRandomModel(real);
    const weights = await fsp.readFile(path.join(real, 'model.safetensors'));
    await expect(initModel(real, { corpus })).rejects.toThrow(`${real}: is not empty and was not written by ft`);
    expect((await fsp.readFile(path.join(real, 'model.safetensors'))).equals(weights)).toBe(true);
    await initModel(real, { corpus, overwrite: true });
    expect((await fsp.readFile(path.join(real, 'model.safetensors'))).equals(weights)).toBe(false);
  });
});

describe('ft init-model', () => {
  it('writes the folder from the command line', async () => {
    const out = path.join(tmp, 'cli');
    const { stdout } = await runFtOk(['init-model', '--out', out, '--seed', '0']);
    expect(stdout).toContain(`wrote ${out}: LlamaForCausalLM, 4 layers, hidden 64`);
    expect(
      Buffer.compare(
        await fsp.readFile(path.join(out, 'model.safetensors')),
        await fsp.readFile(path.join(tmp, 'a', 'model.safetensors')),
      ),
    ).toBe(0);
  });
});
