import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { attachLora, type Adapter, type LoraConfig } from '../adapters/lora.ts';
import { readPeftAdapter } from '../adapters/peft.ts';
import { randomLlama, tinyConfig } from '../test/random-llama.ts';
import {
  checkpointDir,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  OPTIMIZER_FILE,
  saveCheckpoint,
  TRAINER_STATE,
  type TrainerState,
} from './checkpoint.ts';
import { SafetensorsFile, writeSafetensors } from '../model/safetensors.ts';
import { FtError } from '../util/errors.ts';
import { promises as fsp } from 'node:fs';
import { AdamW } from './optimizer.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-checkpoint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const lora: LoraConfig = { r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'], useRslora: false };
const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

/** A random model with a LoRA whose factors and AdamW moments have moved off their initial values. */
function trained(seed: number, r = lora.r): { adapter: Adapter; optimizer: AdamW } {
  const adapter = attachLora(randomLlama(tinyConfig(), 0), { ...lora, r }, seed);
  const params = Object.fromEntries(adapter.variables);
  const optimizer = new AdamW(params, adam);
  for (let i = 0; i < 2; i++) {
    const grads = Object.fromEntries(
      Object.entries(params).map(([k, v], j) => [
        k,
        tf.randomNormal(v.shape, 0, 1, 'float32', seed * 100 + i * 10 + j),
      ]),
    );
    optimizer.step(grads, 1e-2);
    tf.dispose(Object.values(grads));
  }
  return { adapter, optimizer };
}

const stateAt = (step: number): TrainerState => ({
  globalStep: step,
  totalSteps: 10,
  epoch: 1,
  batchInEpoch: 3,
  dropoutRng: [1, 2, 3, 4],
  seed: 7,
  logWindow: { lossSum: 4.5, microBatches: 2, tokens: 96, trainedTokens: 80 },
});

const values = (a: Adapter) => new Map([...a.variables].map(([k, v]) => [k, v.dataSync().slice()]));

describe('checkpoints', () => {
  it('restore adapter factors, optimizer moments, dropout stream and trainer state exactly', async () => {
    const out = path.join(tmp, 'roundtrip');
    const src = trained(1);
    src.adapter.setDropoutState([9, 8, 7, 6]);
    const state = { ...stateAt(4), dropoutRng: src.adapter.dropoutState() };
    const dir = await saveCheckpoint(out, state, src.adapter, src.optimizer, 'base-model');
    expect(dir).toBe(checkpointDir(out, 4));

    const dst = trained(2);
    expect(values(dst.adapter).get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')).not.toEqual(
      values(src.adapter).get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'),
    );
    const loaded = await loadCheckpoint(dir, dst.adapter, dst.optimizer);
    expect(loaded).toEqual(state);
    expect(values(dst.adapter)).toEqual(values(src.adapter));
    expect(dst.optimizer.exportState()).toEqual(src.optimizer.exportState());
    expect(dst.adapter.dropoutState()).toEqual(src.adapter.dropoutState());
  });

  it('hold a PEFT adapter readable as is', async () => {
    const src = trained(3);
    const dir = await saveCheckpoint(path.join(tmp, 'peft'), stateAt(2), src.adapter, src.optimizer, 'base-model');
    const files = await readPeftAdapter(dir);
    expect(files.config.r).toBe(4);
    expect(files.baseModel).toBe('base-model');
    expect(new Map([...files.tensors].map(([k, t]) => [k, t.data]))).toEqual(values(src.adapter));
  });

  it('keep only the newest save_total_limit folders', async () => {
    const out = path.join(tmp, 'prune');
    const src = trained(4);
    for (const step of [2, 4, 6, 8, 10]) await saveCheckpoint(out, stateAt(step), src.adapter, src.optimizer, null, 2);
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([8, 10]);
    expect(existsSync(checkpointDir(out, 6))).toBe(false);
    expect(await latestCheckpoint(out)).toBe(checkpointDir(out, 10));
  });

  it('order by step, not by name, and ignore folders without a trainer state', async () => {
    const out = path.join(tmp, 'order');
    const src = trained(5);
    for (const step of [9, 10, 100]) await saveCheckpoint(out, stateAt(step), src.adapter, src.optimizer, null);
    rmSync(path.join(checkpointDir(out, 100), TRAINER_STATE));
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([9, 10]);
  });

  it('say so when there is nothing to resume', async () => {
    await expect(latestCheckpoint(path.join(tmp, 'none'))).rejects.toThrow(
      /none: no checkpoint-N folder to resume from/,
    );
  });

  it('refuse a trainer state with a bad field, naming the file and field', async () => {
    const src = trained(6);
    const dir = await saveCheckpoint(path.join(tmp, 'bad-state'), stateAt(3), src.adapter, src.optimizer, null);
    const file = path.join(dir, TRAINER_STATE);
    const good = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...good, batchInEpoch: -1 }));
    await expect(loadCheckpoint(dir, src.adapter, src.optimizer)).rejects.toThrow(
      `${file}: field 'batchInEpoch' must be a non-negative integer`,
    );
    writeFileSync(file, JSON.stringify({ ...good, logWindow: undefined }));
    await expect(loadCheckpoint(dir, src.adapter, src.optimizer)).rejects.toThrow(`${file}: field 'logWindow'`);
  });

  it('refuse a checkpoint of another LoRA rank', async () => {
    const src = trained(7, 2);
    const dir = await saveCheckpoint(path.join(tmp, 'rank'), stateAt(1), src.adapter, src.optimizer, null);
    const dst = trained(8, 4);
    await expect(loadCheckpoint(dir, dst.adapter, dst.optimizer)).rejects.toThrow(
      /adapter tensor '.*lora_A.weight' is missing or has another shape than the recipe's LoRA \(r=4\)/,
    );
  });

  it('refuses a corrupt optimizer state with one line naming optimizer.safetensors', async () => {
    const out = path.join(tmp, 'corrupt-opt');
    const src = trained(3);
    const dir = await saveCheckpoint(out, stateAt(2), src.adapter, src.optimizer, null);
    const optFile = path.join(dir, OPTIMIZER_FILE);
    const good = await SafetensorsFile.open(optFile);
    const entries = await Promise.all(
      good.names().map(async (name) => ({ name, dtype: 'F32' as const, ...(await good.read(name)) })),
    );
    const metadata = good.metadata;
    await good.close();
    const dst = trained(4);
    const expectRefused = async (pattern: RegExp) => {
      const err = await loadCheckpoint(dir, dst.adapter, dst.optimizer).catch((e) => e);
      expect(err).toBeInstanceOf(FtError);
      expect(err.message).toMatch(pattern);
      expect(err.message).not.toContain('\n');
    };
    await writeSafetensors(optFile, entries, { ...metadata, steps: '{"oops' });
    await expectRefused(new RegExp(`^${optFile}: metadata 'steps' is not a JSON object of step counts`));
    await writeSafetensors(optFile, entries, { ...metadata, steps: '[1, 2]' });
    await expectRefused(/optimizer\.safetensors: metadata 'steps' is not a JSON object of step counts/);
    const [first] = Object.keys(JSON.parse(metadata.steps));
    await writeSafetensors(
      optFile,
      entries.filter((e) => e.name !== `${first}.exp_avg_sq`),
      metadata,
    );
    await expectRefused(new RegExp(`optimizer\\.safetensors: no tensor '${first.replace(/\./g, '\\.')}\\.exp_avg_sq'`));
    const nan = entries.map((e) =>
      e.name === `${first}.exp_avg_sq` ? { ...e, data: Float32Array.from(e.data, (x, i) => (i === 3 ? -1 : x)) } : e,
    );
    await writeSafetensors(optFile, nan, metadata);
    await expectRefused(
      new RegExp(
        `optimizer\\.safetensors: '${first.replace(/\./g, '\\.')}\\.exp_avg_sq' holds -1 at index 3; AdamW moments must be finite and the second ones >= 0`,
      ),
    );
    await fsp.writeFile(optFile, 'not safetensors at all');
    await expectRefused(/optimizer\.safetensors: /);
  });
});
