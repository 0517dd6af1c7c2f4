// The training loop's promises on a tiny model: determinism, exact resume, checkpoint pruning, no tensor leaks,
// the files a run leaves (metrics, resolved recipe, loss curve, model card) and the push to hub_model_id.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPeftAdapter } from '../adapters/peft.ts';
import { startHubServer, type HubServer } from '../test/hub-server.ts';
import { COPY_DATASET, copyRows, tinyBase, writeJsonl, writeRecipe } from '../test/train-fixtures.ts';
import { listCheckpoints } from '../train/checkpoint.ts';
import { train, type TrainResult } from './train.ts';
import type { MetricsRecord } from '../util/metrics-log.ts';
import { loadRecipe } from './recipe.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-loop-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Small and quick, but with every moving part on: dropout, accumulation, packing, clipping, eval, saves. */
const base = {
  base_model: './tiny',
  adapter: 'lora',
  lora_r: 4,
  lora_alpha: 8,
  lora_dropout: 0.1,
  lora_target_modules: ['q_proj', 'v_proj', 'down_proj'],
  datasets: [{ path: 'copy.jsonl', ...COPY_DATASET }],
  val_set_size: 16,
  sequence_len: 48,
  sample_packing: true,
  micro_batch_size: 2,
  gradient_accumulation_steps: 2,
  max_steps: 8,
  learning_rate: 1e-2,
  warmup_steps: 2,
  weight_decay: 0.01,
  max_grad_norm: 0.5,
  logging_steps: 2,
  eval_steps: 4,
  save_steps: 2,
  save_total_limit: 2,
  seed: 5,
};

async function run(
  name: string,
  over: Record<string, unknown> = {},
  opts: Partial<Parameters<typeof train>[1]> = {},
): Promise<TrainResult> {
  const { file, recipe } = writeRecipe(tmp, { ...base, output_dir: `./${name}`, ...over }, `${name}.yaml`);
  return train(recipe, { recipeFile: file, ...opts });
}

const lossCurve = (h: MetricsRecord[]) =>
  h.map(({ step, epoch, loss, lr, grad_norm, eval_loss }) => ({ step, epoch, loss, lr, grad_norm, eval_loss }));
const adapterTensors = async (dir: string) =>
  new Map([...(await readPeftAdapter(dir)).tensors].map(([k, t]) => [k, t.data]));

let first: TrainResult;
const tensorsAfterStep: number[] = [];
let tensorsBefore = 0;

beforeAll(async () => {
  await tinyBase(path.join(tmp, 'tiny'));
  writeJsonl(path.join(tmp, 'copy.jsonl'), copyRows(120));
  tensorsBefore = tf.memory().numTensors;
  first = await run('first', {}, { onStep: () => tensorsAfterStep.push(tf.memory().numTensors) });
}, 120_000);

describe('train()', () => {
  it('logs every logging step with loss, lr, grad norm and tokens/s, and eval loss every eval_steps', () => {
    expect(first.interrupted).toBe(false);
    expect(first.steps).toBe(8);
    expect(first.history.map((r) => r.step)).toEqual([2, 4, 6, 8]);
    for (const r of first.history) {
      expect(r.loss).toBeGreaterThan(0);
      expect(r.grad_norm).toBeGreaterThan(0);
      expect(r.tokens_per_s).toBeGreaterThan(0);
    }
    expect(first.history.filter((r) => r.eval_loss !== undefined).map((r) => r.step)).toEqual([4, 8]);
    // each line's lr is the one its step used: warmup over steps 0-1, then cosine over steps 2..8 (0-based)
    const cosine = (k: number) => (1e-2 * (1 + Math.cos((Math.PI * (k - 2)) / 6))) / 2;
    expect(first.history.map((r) => r.lr)).toEqual(
      [1e-2 / 2, cosine(3), cosine(5), cosine(7)].map((x) => expect.closeTo(x, 12)),
    );
    expect(first.finalLoss).toBe(first.history[3].loss);
    expect(first.finalEvalLoss).toBe(first.history[3].eval_loss);
  });

  it('keeps the tensor count flat across steps (eval and save steps included) and frees the model at the end', () => {
    expect(tensorsAfterStep).toHaveLength(8);
    expect(new Set(tensorsAfterStep).size).toBe(1);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('gives the same loss curve and adapter for the same recipe and seed', async () => {
    const again = await run('again');
    expect(lossCurve(again.history)).toEqual(lossCurve(first.history));
    expect(await adapterTensors(again.adapterDir)).toEqual(await adapterTensors(first.adapterDir));
    const otherSeed = await run('other-seed', { seed: 6, max_steps: 2 });
    expect(otherSeed.history[0].loss).not.toBe(first.history[0].loss);
  });

  it('resumed after an interruption, ends where the uninterrupted run ends (loss curve and weights to 1e-5)', async () => {
    // stop at step 3: between saves and inside a logging window, so the stop itself writes the checkpoint
    const part = await run('resumed', {}, { stopAfterSteps: 3 });
    expect(part).toMatchObject({ interrupted: true, steps: 3, signal: null });
    expect(path.basename(part.adapterDir)).toBe('checkpoint-3');
    expect(existsSync(path.join(part.outputDir, 'adapter'))).toBe(false);

    const rest = await run('resumed', {}, { resume: true });
    expect(rest.interrupted).toBe(false);
    expect(rest.history.map((r) => r.step)).toEqual([2, 4, 6, 8]);
    const [a, b] = [lossCurve(rest.history), lossCurve(first.history)];
    for (let i = 0; i < a.length; i++) {
      for (const k of ['loss', 'lr', 'grad_norm', 'epoch'] as const) expect(a[i][k]).toBeCloseTo(b[i][k]!, 5);
      expect(a[i].eval_loss === undefined).toBe(b[i].eval_loss === undefined);
      if (b[i].eval_loss !== undefined) expect(a[i].eval_loss).toBeCloseTo(b[i].eval_loss!, 5);
    }
    const [wa, wb] = [await adapterTensors(rest.adapterDir), await adapterTensors(first.adapterDir)];
    for (const [k, v] of wb) {
      const maxDiff = v.reduce((m, x, i) => Math.max(m, Math.abs(x - wa.get(k)![i])), 0);
      expect(maxDiff, k).toBeLessThan(1e-5);
    }
  });

  it('on resume says what the recipe changed, and refuses a change that breaks the continuation unless forced', async () => {
    await run('changed', {}, { stopAfterSteps: 2 });
    const refused = await run('changed', { learning_rate: 2e-2, micro_batch_size: 1 }, { resume: true }).catch(
      (e: Error) => e,
    );
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toMatch(
      /^resume from .*checkpoint-2: the recipe changed micro_batch_size 2 -> 1, learning_rate 0\.01 -> 0\.02 since the checkpoint; .*--resume-force/,
    );
    const lines: string[] = [];
    const forced = await run(
      'changed',
      { learning_rate: 2e-2, logging_steps: 1, max_steps: 3 },
      { resume: true, resumeForce: true, log: (l) => lines.push(l) },
    );
    expect(forced).toMatchObject({ interrupted: false, steps: 3 });
    expect(lines, lines.join('\n')).toContain(
      'ft: warning: resuming with changed max_steps 8 -> 3, learning_rate 0.01 -> 0.02, logging_steps 2 -> 1',
    );
  });

  it('with gradient_checkpointing, follows the same loss curve to the same adapter (dropout masks replayed)', async () => {
    const ckpt = await run('checkpointed', { gradient_checkpointing: true });
    const [a, b] = [lossCurve(ckpt.history), lossCurve(first.history)];
    expect(a.length).toBe(b.length);
    for (let i = 0; i < a.length; i++)
      for (const k of ['loss', 'grad_norm'] as const) expect(a[i][k]).toBeCloseTo(b[i][k]!, 4);
    const [wa, wb] = [await adapterTensors(ckpt.adapterDir), await adapterTensors(first.adapterDir)];
    for (const [k, v] of wb) {
      const maxDiff = v.reduce((m, x, i) => Math.max(m, Math.abs(x - wa.get(k)![i])), 0);
      expect(maxDiff, k).toBeLessThan(1e-4);
    }
  });

  it('keeps the newest save_total_limit checkpoints, the final one included', async () => {
    expect((await listCheckpoints(first.outputDir)).map((c) => c.step)).toEqual([6, 8]);
  });

  it("a fresh run in an earlier run's output_dir replaces its checkpoints", async () => {
    await run('rerun', { max_steps: 4 });
    renameSync(path.join(tmp, 'rerun', 'checkpoint-4'), path.join(tmp, 'rerun', 'checkpoint-100'));
    const lines: string[] = [];
    await run('rerun', { max_steps: 4 }, { log: (l) => lines.push(l) });
    expect((await listCheckpoints(path.join(tmp, 'rerun'))).map((c) => c.step)).toEqual([2, 4]);
    expect(lines).toContain(
      `ft: fresh run in ${path.join(tmp, 'rerun')}: removed checkpoint-2, checkpoint-100 of an earlier run (--resume continues one instead)`,
    );
  });

  it('leaves metrics.jsonl, the resolved recipe, a loss curve and a model card beside the adapter', () => {
    const out = first.outputDir;
    const lines = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).step)).toEqual([2, 4, 6, 8]);
    expect(loadRecipe(path.join(out, 'recipe.yaml'))).toEqual(loadRecipe(path.join(tmp, 'first.yaml')));
    const svg = readFileSync(path.join(out, 'loss.svg'), 'utf8');
    expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain('eval');
    const card = readFileSync(path.join(first.adapterDir, 'README.md'), 'utf8');
    expect(card).toMatch(/^---\nlibrary_name: peft\n/);
    expect(card).toContain('lora_r: 4'); // the recipe, verbatim
    expect(card).toContain(first.finalLoss!.toPrecision(4));
    expect(card).toContain('copy.jsonl');
  });
});

describe('train() with hub_model_id', () => {
  let hub: HubServer;
  const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_TOKEN: process.env.HF_TOKEN };
  beforeAll(async () => {
    hub = await startHubServer([{ name: 'carol', token: 'hf_carol' }]);
    Object.assign(process.env, { HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_carol' });
  });
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    await hub?.close();
  });

  it('pushes the finished adapter folder, model card included', async () => {
    const r = await run('pushed', { max_steps: 2, save_steps: undefined, hub_model_id: 'carol/copy-lora' });
    expect(r.pushed?.url).toBe(`${hub.url}/carol/copy-lora`);
    const files = hub.repos.get('carol/copy-lora')!.branches.get('main')!;
    expect([...files.keys()].sort()).toEqual(['README.md', 'adapter_config.json', 'adapter_model.safetensors']);
    expect(files.get('README.md')!.bytes.toString()).toContain('carol/copy-lora');
  });
});
