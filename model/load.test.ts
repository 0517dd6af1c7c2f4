import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { FtError } from '../util/errors.ts';
import { configJson, parseConfig } from './config.ts';
import { randomTensors } from './init.ts';
import type { LinearFactory } from './linear.ts';
import { denseLinear } from './linear.ts';
import { INDEX_FILE, expectedTensors, loadLlama, openModelDir, weightsFromTensors } from './load.ts';
import { writeSafetensors, type SafetensorsEntry } from './safetensors.ts';
import type { LlamaConfig } from './types.ts';

const base: Omit<LlamaConfig, 'raw'> = {
  architecture: 'LlamaForCausalLM',
  hiddenSize: 8,
  intermediateSize: 12,
  numHiddenLayers: 2,
  numAttentionHeads: 2,
  numKeyValueHeads: 1,
  headDim: 4,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  vocabSize: 16,
  maxPositionEmbeddings: 32,
  tieWordEmbeddings: false,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};
const cfg = (over: Partial<LlamaConfig> = {}) => parseConfig(configJson({ ...base, ...over }), 'config.json');

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-load-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

/** Values of every entry, materialized. */
async function values(entries: SafetensorsEntry[]): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const m = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const e of entries)
    m.set(e.name, { shape: e.shape, data: typeof e.data === 'function' ? await e.data() : e.data });
  return m;
}

async function writeModel(dir: string, config: LlamaConfig, entries: SafetensorsEntry[], shards = 1): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config.raw));
  if (shards === 1) return writeSafetensors(path.join(dir, 'model.safetensors'), entries);
  const per = Math.ceil(entries.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = entries.slice(s * per, (s + 1) * per);
    for (const e of part) weightMap[e.name] = file;
    await writeSafetensors(path.join(dir, file), part);
  }
  await fsp.writeFile(
    path.join(dir, INDEX_FILE),
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
  );
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FtError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('loadLlama', () => {
  it.each([1, 3])(
    'loads every tensor unchanged from %i shard(s), in the order the factory sees them',
    async (shards) => {
      const config = cfg();
      const entries = randomTensors(config, 7);
      const want = await values(entries);
      const dir = path.join(tmp, `m${shards}`);
      await writeModel(dir, config, entries, shards);

      const built: string[] = [];
      const factory: LinearFactory = (name, w, out, inp, b) => (built.push(name), denseLinear(name, w, out, inp, b));
      const progress: number[] = [];
      const m = await loadLlama(dir, { linear: factory, onTensor: (d, t) => progress.push(d / t) });
      expect(progress.at(-1)).toBe(1);
      expect(progress.length).toBe(expectedTensors(config).length);
      expect(built.slice(0, 7)).toEqual([
        'model.layers.0.self_attn.q_proj',
        'model.layers.0.self_attn.k_proj',
        'model.layers.0.self_attn.v_proj',
        'model.layers.0.self_attn.o_proj',
        'model.layers.0.mlp.gate_proj',
        'model.layers.0.mlp.up_proj',
        'model.layers.0.mlp.down_proj',
      ]);
      expect(built.length).toBe(2 * 7); // every projection; lm_head stays float, as bitsandbytes leaves it
      expect(m.embedTokens.shape).toEqual([16, 8]);
      expect(Array.from(m.embedTokens.dataSync())).toEqual(Array.from(want.get('model.embed_tokens.weight')!.data));
      expect(Array.from(m.layers[1].proj.k_proj.denseWeight())).toEqual(
        Array.from(want.get('model.layers.1.self_attn.k_proj.weight')!.data),
      );
      expect([m.layers[1].proj.k_proj.outFeatures, m.layers[1].proj.k_proj.inFeatures]).toEqual([4, 8]);
      expect([m.layers[0].proj.down_proj.outFeatures, m.layers[0].proj.down_proj.inFeatures]).toEqual([8, 12]);
      expect(Array.from(m.layers[0].inputLayernorm.dataSync())).toEqual(new Array(8).fill(1));
      expect(Array.from(m.lmHead!.denseWeight())).toEqual(Array.from(want.get('lm_head.weight')!.data));
    },
  );

  it('reads q/k/v biases for Qwen2 and no lm_head when embeddings are tied', async () => {
    const config = cfg({ architecture: 'Qwen2ForCausalLM', tieWordEmbeddings: true });
    const entries = randomTensors(config, 1);
    expect(entries.map((e) => e.name)).toContain('model.layers.0.self_attn.k_proj.bias');
    expect(entries.map((e) => e.name)).not.toContain('lm_head.weight');
    const want = await values(entries);
    const m = await weightsFromTensors(config, (n) => want.get(n)!);
    expect(m.lmHead).toBeNull();
    expect(m.layers[0].proj.q_proj.bias?.length).toBe(8);
    expect(m.layers[0].proj.o_proj.bias).toBeNull();
  });

  it('disposes what it built when a later tensor is bad', async () => {
    const config = cfg();
    const want = await values(randomTensors(config, 2));
    want.set('model.norm.weight', { shape: [9], data: new Float32Array(9) });
    const before = tf.memory().numTensors;
    expect(await errorOf(weightsFromTensors(config, (n) => want.get(n)!, denseLinear, { source: 'mem' }))).toBe(
      "mem: tensor 'model.norm.weight' has shape [9], but the config needs [8]",
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('model folder errors name the file and tensor', () => {
  it('a shape that does not match the config', async () => {
    const config = cfg();
    const entries = randomTensors(config, 3).map((e) =>
      e.name === 'model.layers.1.mlp.up_proj.weight' ? { ...e, shape: [8, 12], data: new Float32Array(96) } : e,
    );
    const dir = path.join(tmp, 'badshape');
    await writeModel(dir, config, entries);
    expect(await errorOf(loadLlama(dir))).toBe(
      `${dir}: tensor 'model.layers.1.mlp.up_proj.weight' has shape [8, 12], but the config needs [12, 8]`,
    );
  });

  it('a missing tensor', async () => {
    const config = cfg();
    const dir = path.join(tmp, 'missing');
    await writeModel(
      dir,
      config,
      randomTensors(config, 3).filter((e) => e.name !== 'model.layers.0.post_attention_layernorm.weight'),
    );
    expect(await errorOf(loadLlama(dir))).toBe(
      `${dir}: missing tensor 'model.layers.0.post_attention_layernorm.weight' (not in model.safetensors)`,
    );
  });

  it('a shard named in the index but absent', async () => {
    const config = cfg();
    const dir = path.join(tmp, 'noshard');
    await writeModel(dir, config, randomTensors(config, 3), 2);
    await fsp.rm(path.join(dir, 'model-00002-of-00002.safetensors'));
    expect(await errorOf(openModelDir(dir))).toMatch(
      new RegExp(
        `^${dir}/model\\.safetensors\\.index\\.json places '.+' in shard 'model-00002-of-00002\\.safetensors', but ${dir}/model-00002-of-00002\\.safetensors is absent$`,
      ),
    );
  });

  it('no weights at all, and no config', async () => {
    const dir = path.join(tmp, 'noweights');
    await fsp.mkdir(dir, { recursive: true });
    expect(await errorOf(openModelDir(dir))).toMatch(/config\.json: cannot read \(ENOENT\)/);
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg().raw));
    expect(await errorOf(openModelDir(dir))).toBe(
      `${dir}: no model.safetensors or model.safetensors.index.json (expected safetensors weights; .bin/.pth checkpoints are not supported)`,
    );
  });

  it('a truncated weights file', async () => {
    const config = cfg();
    const dir = path.join(tmp, 'trunc');
    await writeModel(dir, config, randomTensors(config, 3));
    const file = path.join(dir, 'model.safetensors');
    const bytes = await fsp.readFile(file);
    await fsp.writeFile(file, bytes.subarray(0, bytes.length - 100));
    expect((await errorOf(openModelDir(dir))).startsWith(`${file}: `)).toBe(true); // the whole path, not the basename
    expect(await errorOf(openModelDir(dir))).toMatch(
      /model\.safetensors: tensor 'lm_head\.weight' data_offsets \[\d+, \d+\] end past the file's \d+ data bytes/,
    );
  });
});
