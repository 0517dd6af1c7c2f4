import * as tf from '@tensorflow/tfjs';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLlama } from '../model/load.ts';
import { forward } from '../model/llama.ts';
import { SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '../model/safetensors.ts';
import type { LlamaWeights } from '../model/types.ts';
import { randn, rowsBatch, SMALL, writeRandomModel } from '../test/random-llama.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { attachLora, type Adapter, type LoraConfig } from './lora.ts';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  loadPeftAdapter,
  parsePeftConfig,
  readPeftAdapter,
  savePeftAdapter,
} from './peft.ts';

const fixture = (f: string) => new URL(`../test/fixtures/peft/${f}`, import.meta.url);
const referenceConfig = JSON.parse(readFileSync(fixture('adapter_config.reference.json'), 'utf8'));
const referenceKeys = readFileSync(fixture('adapter_keys.reference.txt'), 'utf8').trim().split('\n');

let tmp: string;
let modelDir: string;
const batch = rowsBatch([
  [1, 5, 9, 3, 7, 11],
  [2, 4, 6, 8, 10, 12],
]);
const logits = (w: LlamaWeights) => forward(w, batch).dataSync();
const cfg = (over: Partial<LoraConfig> = {}): LoraConfig => ({
  r: 4,
  alpha: 8,
  dropout: 0.05,
  targetModules: ['q_proj', 'v_proj'],
  useRslora: false,
  ...over,
});

/** Attach and give B (and A) random values so the adapter changes the model. */
function trainedAdapter(w: LlamaWeights, c: LoraConfig = cfg()): Adapter {
  const adapter = attachLora(w, c, 3);
  let seed = 100;
  for (const v of adapter.trainableVariables()) v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', seed++));
  return adapter;
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-peft-'));
  modelDir = path.join(tmp, 'base');
  await writeRandomModel(modelDir);
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('PEFT adapter files', () => {
  it('writes adapter_config.json with the fields and layout of PEFT save_pretrained', async () => {
    const w = await loadLlama(modelDir);
    const dir = path.join(tmp, 'cfg');
    await savePeftAdapter(dir, trainedAdapter(w, cfg({ targetModules: 'all-linear', useRslora: true })), 'org/tiny');
    const text = await fsp.readFile(path.join(dir, ADAPTER_CONFIG), 'utf8');
    const json = JSON.parse(text);
    const refKeys = Object.keys(referenceConfig).filter((k) => k !== 'peft_version');
    expect(Object.keys(json)).toEqual(refKeys); // same fields, sorted as json.dumps(sort_keys=True)
    for (const k of refKeys) {
      if (!['base_model_name_or_path', 'r', 'lora_alpha', 'lora_dropout', 'target_modules', 'use_rslora'].includes(k))
        expect(json[k]).toEqual(referenceConfig[k]);
    }
    expect(json).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      base_model_name_or_path: 'org/tiny',
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0.05,
      use_rslora: true,
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      layers_to_transform: null,
      modules_to_save: null,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    });
    expect(text.startsWith('{\n  "alora_invocation_tokens": null,\n')).toBe(true);
  });

  it('writes adapter_model.safetensors under PEFT key names with A [r, in] and B [out, r] in float32', async () => {
    const w = await loadLlama(modelDir);
    const dir = path.join(tmp, 'keys');
    await savePeftAdapter(dir, trainedAdapter(w), null);
    const st = await SafetensorsFile.open(path.join(dir, ADAPTER_WEIGHTS));
    expect(st.names()).toEqual(referenceKeys);
    expect(st.metadata).toEqual({ format: 'pt' });
    const q = SMALL.numAttentionHeads * SMALL.headDim;
    const kv = SMALL.numKeyValueHeads * SMALL.headDim;
    expect(st.info('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight')).toMatchObject({
      dtype: 'F32',
      shape: [4, SMALL.hiddenSize],
    });
    expect(st.info('base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight')).toMatchObject({
      dtype: 'F32',
      shape: [q, 4],
    });
    expect(st.info('base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight')).toMatchObject({
      dtype: 'F32',
      shape: [kv, 4],
    });
    await st.close();
  });

  it('a zero-initialized adapter changes no logits', async () => {
    const w = await loadLlama(modelDir);
    const before = logits(w);
    attachLora(w, cfg({ targetModules: 'all-linear' }), 1);
    expect(logits(w)).toEqual(before);
  });

  it('round-trips: save then load on a fresh base gives identical logits', async () => {
    const w = await loadLlama(modelDir);
    const base = logits(w);
    const adapter = trainedAdapter(
      w,
      cfg({ targetModules: ['k_proj', 'o_proj', 'down_proj'], layersToTransform: [1], useRslora: true }),
    );
    const adapted = logits(w);
    expect(Math.max(...adapted.map((v, i) => Math.abs(v - base[i])))).toBeGreaterThan(1e-2);
    const dir = path.join(tmp, 'rt');
    await savePeftAdapter(dir, adapter, modelDir);
    const fresh = await loadLlama(modelDir);
    const loaded = await loadPeftAdapter(dir, fresh);
    expect(loaded.config).toEqual({ ...adapter.config, layersToTransform: [1] });
    expect(logits(fresh)).toEqual(adapted);
  });

  it('loads adapters from other tools: adapter-named keys, no base_model prefix, F16/BF16 factors', async () => {
    const dir = path.join(tmp, 'foreign');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(
      path.join(dir, ADAPTER_CONFIG),
      JSON.stringify({
        peft_type: 'LORA',
        r: 2,
        lora_alpha: 4,
        target_modules: ['self_attn.q_proj'],
        base_model_name_or_path: 'x',
      }),
    );
    const rng = new Rng(5);
    const entries: SafetensorsEntry[] = [];
    for (let i = 0; i < SMALL.numHiddenLayers; i++) {
      entries.push({
        name: `base_model.model.model.layers.${i}.self_attn.q_proj.lora_A.default.weight`,
        dtype: 'F16',
        shape: [2, 16],
        data: randn(rng, 32, 0.3),
      });
      entries.push({
        name: `model.layers.${i}.self_attn.q_proj.lora_B.weight`,
        dtype: 'BF16',
        shape: [16, 2],
        data: randn(rng, 32, 0.3),
      });
    }
    await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), entries);
    const w = await loadLlama(modelDir);
    const adapter = await loadPeftAdapter(dir, w);
    expect(adapter.config).toMatchObject({ r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj'] });
    const st = await SafetensorsFile.open(path.join(dir, ADAPTER_WEIGHTS));
    const b1 = await st.read('model.layers.1.self_attn.q_proj.lora_B.weight');
    expect(adapter.variables.get('base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight')!.dataSync()).toEqual(
      b1.data,
    );
    await st.close();
  });

  it('reads a regex target_modules that picks the same projections per block', () => {
    const parsed = parsePeftConfig(
      { peft_type: 'LORA', r: 8, target_modules: '.*\\.(q_proj|v_proj)', lora_alpha: 16 },
      'a.json',
    );
    expect(parsed.config).toMatchObject({ targetModules: ['q_proj', 'v_proj'] });
    expect(parsed.config.layersToTransform).toBeUndefined();
    const some = parsePeftConfig(
      { peft_type: 'LORA', target_modules: 'model\\.layers\\.(0|3)\\.mlp\\.down_proj' },
      'a.json',
    );
    expect(some.config).toMatchObject({ targetModules: ['down_proj'], layersToTransform: [0, 3], r: 8, alpha: 8 });
    expect(() =>
      parsePeftConfig(
        {
          peft_type: 'LORA',
          target_modules: 'model\\.layers\\.0\\.mlp\\.down_proj|model\\.layers\\.1\\.self_attn\\.q_proj',
        },
        'a.json',
      ),
    ).toThrow(/picks different projections in different blocks/);
  });
});

describe('PEFT adapter errors', () => {
  async function adapterDir(
    name: string,
    config: Record<string, unknown>,
    entries: SafetensorsEntry[],
  ): Promise<string> {
    const dir = path.join(tmp, name);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(
      path.join(dir, ADAPTER_CONFIG),
      JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], ...config }),
    );
    await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), entries);
    return dir;
  }
  const factor = (
    layer: number,
    f: 'A' | 'B',
    shape = f === 'A' ? [2, 16] : [16, 2],
    proj = 'self_attn.q_proj',
  ): SafetensorsEntry => ({
    name: `base_model.model.model.layers.${layer}.${proj}.lora_${f}.weight`,
    dtype: 'F32',
    shape,
    data: new Float32Array(shape[0] * shape[1]),
  });
  const full = () => [factor(0, 'A'), factor(0, 'B'), factor(1, 'A'), factor(1, 'B')];
  const expectError = async (p: Promise<unknown>, msg: RegExp) => {
    const e = (await p.catch((x: unknown) => x)) as Error;
    expect(e).toBeInstanceOf(FtError);
    expect(e.message).toMatch(msg);
    expect(e.message).not.toContain('\n');
  };

  it('names a missing key', async () => {
    const dir = await adapterDir('missing', {}, [factor(0, 'A'), factor(0, 'B'), factor(1, 'A')]);
    await expectError(
      readPeftAdapter(dir),
      /missing tensor 'base_model\.model\.model\.layers\.1\.self_attn\.q_proj\.lora_B\.weight'/,
    );
    const dir2 = await adapterDir('missing-layer', {}, [factor(0, 'A'), factor(0, 'B')]);
    await expectError(
      loadPeftAdapter(dir2, await loadLlama(modelDir)),
      /missing tensor 'base_model\.model\.model\.layers\.1\.self_attn\.q_proj\.lora_A\.weight'/,
    );
  });

  it('names an extra key', async () => {
    const dir = await adapterDir('extra', {}, [
      ...full(),
      factor(0, 'A', [2, 16], 'self_attn.k_proj'),
      factor(0, 'B', [8, 2], 'self_attn.k_proj'),
    ]);
    await expectError(
      readPeftAdapter(dir),
      /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight' is for a module the config does not target/,
    );
    const dir2 = await adapterDir('extra2', {}, [
      ...full(),
      { name: 'base_model.model.lm_head.lora_A.weight', dtype: 'F32', shape: [2, 16], data: new Float32Array(32) },
    ]);
    await expectError(readPeftAdapter(dir2), /unexpected tensor 'base_model\.model\.lm_head\.lora_A\.weight'/);
  });

  it('names the key whose shape does not fit the model (adapter for another base)', async () => {
    const dir = await adapterDir('shape', { base_model_name_or_path: 'org/bigger' }, [
      factor(0, 'A', [2, 32]),
      factor(0, 'B', [16, 2]),
      factor(1, 'A', [2, 32]),
      factor(1, 'B'),
    ]);
    await expectError(
      loadPeftAdapter(dir, await loadLlama(modelDir)),
      /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[2,32\], but the model's model\.layers\.0\.self_attn\.q_proj \[16, 16\] needs \[2,16\] \(adapter made for org\/bigger\)/,
    );
    const wrongR = await adapterDir('rank', {}, [
      factor(0, 'A', [3, 16]),
      factor(0, 'B'),
      factor(1, 'A'),
      factor(1, 'B'),
    ]);
    await expectError(readPeftAdapter(wrongR), /lora_A\.weight' has shape \[3,16\], expected \[r=2, in\]/);
    const deep = await adapterDir('deep', {}, [...full(), factor(5, 'A'), factor(5, 'B')]);
    await expectError(loadPeftAdapter(deep, await loadLlama(modelDir)), /is for block 5, but the model has 2 blocks/);
  });

  it('rejects what ft cannot reproduce and folders that are not PEFT adapters', async () => {
    await expectError(
      adapterDir('dora', { use_dora: true }, full()).then(readPeftAdapter),
      /use_dora is true: DoRA adapters are not supported/,
    );
    await expectError(adapterDir('bias', { bias: 'all' }, full()).then(readPeftAdapter), /bias is "all"/);
    await expectError(
      adapterDir('ia3', { peft_type: 'IA3' }, full()).then(readPeftAdapter),
      /peft_type is "IA3", expected "LORA"/,
    );
    await expectError(
      adapterDir('unk', { target_modules: ['q_proj', 'qkv'] }, full()).then(readPeftAdapter),
      /target_modules has "qkv", which is no projection of a decoder block \(the model has q_proj, k_proj/,
    );
    await expectError(adapterDir('r0', { r: 0 }, full()).then(readPeftAdapter), /r must be a positive integer, got 0/);
    await expectError(
      adapterDir('drop', { lora_dropout: 1.5 }, full()).then(readPeftAdapter),
      /lora_dropout\) must be in \[0, 1\), got 1\.5/,
    );
    const bin = path.join(tmp, 'bin');
    await fsp.mkdir(bin, { recursive: true });
    await fsp.writeFile(path.join(bin, ADAPTER_CONFIG), '{}');
    await fsp.writeFile(path.join(bin, 'adapter_model.bin'), 'x');
    await expectError(readPeftAdapter(bin), /no adapter_model\.safetensors \(adapter_model\.bin is a pickle/);
    await expectError(
      readPeftAdapter(path.join(tmp, 'nowhere')),
      /no adapter_config\.json \(expected a PEFT adapter folder\)/,
    );
  });
});
