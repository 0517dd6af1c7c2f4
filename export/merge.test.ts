import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachLora, type LoraConfig } from '../adapters/lora.ts';
import { savePeftAdapter } from '../adapters/peft.ts';
import { forward } from '../model/llama.ts';
import { INDEX_FILE, loadLlama } from '../model/load.ts';
import { SafetensorsFile } from '../model/safetensors.ts';
import type { LlamaWeights } from '../model/types.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { loadPeftAdapter } from '../adapters/peft.ts';
import { rowsBatch, SMALL, tinyConfig, writeRandomModel } from '../test/random-llama.ts';
import { FtError } from '../util/errors.ts';
import { exportMerged, modelTensors, parseShardSize, planShards, quantizedMergeWarning, saveHfModel } from './merge.ts';

let tmp: string;
let modelDir: string;
let adapterDir: string;
/** Logits of base + (unmerged) adapter. */
let expected: Float32Array;
const batch = rowsBatch([
  [1, 5, 9, 3, 7, 11, 13],
  [2, 4, 6, 8, 10, 12, 14],
]);
const logits = (w: LlamaWeights) => forward(w, batch).dataSync() as Float32Array;
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const lora: LoraConfig = { r: 4, alpha: 16, dropout: 0.1, targetModules: 'all-linear', useRslora: false };

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-merge-'));
  modelDir = path.join(tmp, 'base');
  await writeRandomModel(modelDir);
  await fsp.writeFile(path.join(modelDir, 'tokenizer.json'), '{"model": {"type": "BPE"}}');
  await fsp.writeFile(path.join(modelDir, 'generation_config.json'), '{"bos_token_id": 1}');
  const w = await loadLlama(modelDir);
  const adapter = attachLora(w, lora, 1);
  let seed = 7;
  for (const v of adapter.trainableVariables()) v.assign(tf.randomNormal(v.shape, 0, 0.2, 'float32', seed++));
  expected = logits(w);
  adapterDir = path.join(tmp, 'adapter');
  await savePeftAdapter(adapterDir, adapter, modelDir);
  const base = logits(await loadLlama(modelDir));
  expect(maxAbsDiff(expected, base)).toBeGreaterThan(0.05); // the adapter matters
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('shard planning', () => {
  it('parses sizes in huggingface_hub units', () => {
    expect(parseShardSize('2GB')).toBe(2_000_000_000);
    expect(parseShardSize('500MB')).toBe(500_000_000);
    expect(parseShardSize('1.5gb')).toBe(1_500_000_000);
    expect(parseShardSize('4096')).toBe(4096);
    for (const bad of ['2 GiB', 'GB', '-1MB', '0', '']) expect(() => parseShardSize(bad)).toThrow(FtError);
    expect(() => parseShardSize('2 GiB')).toThrow(/--max-shard-size: "2 GiB" is not a size/);
  });

  it('starts a new shard before the limit would be passed and gives an oversized tensor its own shard', () => {
    const plan = planShards(
      [
        { name: 'a', bytes: 6 },
        { name: 'b', bytes: 6 },
        { name: 'c', bytes: 2 },
        { name: 'd', bytes: 12 },
        { name: 'e', bytes: 2 },
        { name: 'f', bytes: 2 },
      ],
      10,
    );
    // as huggingface_hub does: d (12 > 10) is closed into its own shard at once, while [b, c] stays open and takes e
    expect(plan.shards).toEqual([
      { file: 'model-00001-of-00004.safetensors', names: ['a'] },
      { file: 'model-00002-of-00004.safetensors', names: ['d'] },
      { file: 'model-00003-of-00004.safetensors', names: ['b', 'c', 'e'] },
      { file: 'model-00004-of-00004.safetensors', names: ['f'] },
    ]);
    expect(plan.totalSize).toBe(30);
    expect(plan.weightMap.c).toBe('model-00003-of-00004.safetensors');
    expect(planShards([{ name: 'a', bytes: 6 }], 10).shards).toEqual([{ file: 'model.safetensors', names: ['a'] }]);
  });
});

describe('ft export merged', () => {
  it('writes a float32 model that reloads with logits equal to base + adapter (1e-4), sharded with a consistent index', async () => {
    const out = path.join(tmp, 'merged32');
    const plan = await exportMerged({
      model: modelDir,
      adapter: adapterDir,
      out,
      dtype: 'float32',
      maxShardSize: parseShardSize('4KB'),
    });
    expect(plan.shards.length).toBeGreaterThan(3);
    const merged = await loadLlama(out);
    expect(maxAbsDiff(logits(merged), expected)).toBeLessThan(1e-4);

    const files = (await fsp.readdir(out)).sort();
    expect(files).toEqual(
      [
        '.ft-output',
        'config.json',
        'generation_config.json',
        INDEX_FILE,
        ...plan.shards.map((s) => s.file),
        'tokenizer.json',
      ].sort(),
    );
    expect(await fsp.readFile(path.join(out, 'tokenizer.json'), 'utf8')).toBe('{"model": {"type": "BPE"}}');
    const config = JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8'));
    expect(config.torch_dtype).toBe('float32');

    const index = JSON.parse(await fsp.readFile(path.join(out, INDEX_FILE), 'utf8'));
    expect(Object.keys(index)).toEqual(['metadata', 'weight_map']);
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());
    let total = 0;
    const seen = new Set<string>();
    for (const s of plan.shards) {
      const st = await SafetensorsFile.open(path.join(out, s.file));
      let bytes = 0;
      for (const name of st.names()) {
        expect(index.weight_map[name]).toBe(s.file);
        const t = st.info(name);
        expect(t.dtype).toBe('F32');
        bytes += t.dataOffsets[1] - t.dataOffsets[0];
        seen.add(name);
      }
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(bytes <= 4000 || st.names().length === 1).toBe(true);
      total += bytes;
      await st.close();
    }
    expect(index.metadata.total_size).toBe(total);
    expect([...seen].sort()).toEqual(Object.keys(index.weight_map));
  });

  it('writes float16 and bfloat16 models whose logits stay within rounding of base + adapter', async () => {
    // tolerances relative to the largest logit; this random model amplifies weight rounding (2^-11 f16, 2^-8 bf16) to ~1% / ~2.5%
    for (const [dtype, st, tol] of [
      ['float16', 'F16', 2e-2],
      ['bfloat16', 'BF16', 1e-1],
    ] as const) {
      const out = path.join(tmp, `merged-${dtype}`);
      const plan = await exportMerged({
        model: modelDir,
        adapter: adapterDir,
        out,
        dtype,
        maxShardSize: parseShardSize('2GB'),
      });
      expect(plan.shards.map((s) => s.file)).toEqual(['model.safetensors']);
      await expect(fsp.stat(path.join(out, INDEX_FILE))).rejects.toThrow();
      const file = await SafetensorsFile.open(path.join(out, 'model.safetensors'));
      expect(file.info('model.layers.0.self_attn.q_proj.weight').dtype).toBe(st);
      await file.close();
      expect(JSON.parse(await fsp.readFile(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe(dtype);
      const err = maxAbsDiff(logits(await loadLlama(out)), expected);
      const scale = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(err).toBeGreaterThan(0); // really rounded
      expect(err).toBeLessThan(tol * scale);
    }
  });

  it('streams the same bytes from the folder as it writes from an in-memory model with the adapter attached', async () => {
    const streamed = path.join(tmp, 'streamed');
    const inMemory = path.join(tmp, 'in-memory');
    await exportMerged({ model: modelDir, adapter: adapterDir, out: streamed, dtype: 'bfloat16', maxShardSize: 1e9 });
    const w = await loadLlama(modelDir);
    const adapter = await loadPeftAdapter(adapterDir, w);
    await saveHfModel(inMemory, modelTensors(w, adapter), w.config.raw, {
      dtype: 'bfloat16',
      maxShardSize: 1e9,
      copyFrom: modelDir,
    });
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) {
      expect((await fsp.readFile(path.join(inMemory, f))).equals(await fsp.readFile(path.join(streamed, f)))).toBe(
        true,
      );
    }
  });

  it('with a 4-bit base merges into the dequantized weights, warns, and reloads equal to nf4 base + adapter', async () => {
    const qw = await loadLlama(modelDir, { linear: quantizedLinear('nf4') });
    await loadPeftAdapter(adapterDir, qw);
    const qlora = logits(qw);
    expect(maxAbsDiff(qlora, expected)).toBeGreaterThan(1e-3); // the 4-bit base is a different model
    const warnings: string[] = [];
    const out = path.join(tmp, 'merged-nf4');
    const plan = await exportMerged({
      model: modelDir,
      adapter: adapterDir,
      out,
      maxShardSize: 1e9,
      linear: quantizedLinear('nf4'),
      quantized: 'nf4',
      warn: (m) => warnings.push(m),
    });
    expect(plan.dtype).toBe('float32'); // the base's torch_dtype
    expect(warnings).toEqual([quantizedMergeWarning('nf4', 'float32')]);
    expect(maxAbsDiff(logits(await loadLlama(out)), qlora)).toBeLessThan(1e-4);
  });

  it('says what merging into a quantized base means', () => {
    const msg = quantizedMergeWarning('nf4', 'float16');
    expect(msg).toMatch(
      /^warning: the base is nf4-quantized, so the adapter is merged into the dequantized nf4 weights/,
    );
    expect(msg).toMatch(/quantizing the merged model again .* changes its outputs/);
  });

  it('leaves no output folder when the adapter does not fit the base', async () => {
    const other = path.join(tmp, 'other-base');
    await writeRandomModel(other, tinyConfig({ ...SMALL, hiddenSize: 24, headDim: 6 }));
    const out = path.join(tmp, 'never');
    await expect(
      exportMerged({ model: other, adapter: adapterDir, out, dtype: 'float32', maxShardSize: 1e9 }),
    ).rejects.toThrow(/has shape \[4,16\], but the model's/);
    await expect(fsp.stat(out)).rejects.toThrow();
  });
});
