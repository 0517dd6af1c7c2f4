// The loop on built parts: a random tiny model with LoRA, hand-made batches, no recipe.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachLora } from '../adapters/lora.ts';
import { readPeftAdapter } from '../adapters/peft.ts';
import { collate } from '../data/batch.ts';
import type { Example } from '../data/types.ts';
import { disposeLlama } from '../model/llama.ts';
import { IGNORE_INDEX, type TrainBatch } from '../model/types.ts';
import { randomLlama, tinyConfig } from '../test/random-llama.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { listCheckpoints } from './checkpoint.ts';
import { freshState, trainLoop, type BatchSource, type LoopConfig, type LoopHooks, type LoopResult } from './loop.ts';
import { AdamW } from './optimizer.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-loop-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const config = tinyConfig({ vocabSize: 64 });

/** An example of `length` tokens whose first `masked` labels are ignored (a prompt not trained on). */
function example(rng: Rng, length: number, masked: number): Example {
  const ids = Int32Array.from({ length }, () => Math.floor(rng.next() * config.vocabSize));
  const labels = Int32Array.from(ids, (id, i) => (i < masked ? IGNORE_INDEX : id));
  return { ids, labels };
}

const rng = new Rng(3);
// lengths and trained tokens differ a lot, so a mean of per-batch means would weigh them wrongly
const EXAMPLES = [example(rng, 30, 26), example(rng, 12, 2), example(rng, 22, 11), example(rng, 9, 1)];

/** The examples as micro-batches of `rows` (each padded to its longest row), one epoch. */
function source(rows: number): BatchSource {
  const batches: TrainBatch[] = [];
  for (let i = 0; i < EXAMPLES.length; i += rows)
    batches.push(
      collate(
        EXAMPLES.slice(i, i + rows).map((e) => [e]),
        0,
      ),
    );
  return {
    perEpoch: batches.length,
    async *batches(_epoch, startBatch) {
      yield* batches.slice(startBatch);
    },
  };
}

async function run(
  microBatch: number,
  gradAccum: number,
  overrides: Partial<LoopConfig> = {},
  steps = 1,
  hooks: LoopHooks = {},
): Promise<LoopResult> {
  const weights = randomLlama(config, 1);
  const adapter = attachLora(weights, { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear', useRslora: false }, 0);
  const optimizer = new AdamW(Object.fromEntries(adapter.variables), {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
  });
  const cfg: LoopConfig = {
    outputDir: mkdtempSync(path.join(tmp, 'run-')),
    totalSteps: steps,
    gradAccumSteps: gradAccum,
    learningRate: () => 1e-2,
    maxGradNorm: 0,
    loggingSteps: 1,
    seed: 0,
    gradientCheckpointing: false,
    baseModel: null,
    ...overrides,
  };
  try {
    return await trainLoop({ weights, adapter }, source(microBatch), optimizer, cfg, freshState(cfg, adapter), hooks);
  } finally {
    optimizer.dispose();
    disposeLlama(weights);
  }
}

describe('trainLoop', () => {
  it('normalizes gradient accumulation by the trained tokens of the whole window: 2x1 and 1x2 (and 4x1, 1x4) agree', async () => {
    for (const [a, b] of [
      [
        [2, 1],
        [1, 2],
      ],
      [
        [4, 1],
        [1, 4],
      ],
    ] as const) {
      const one = (await run(a[0], a[1])).history[0];
      const acc = (await run(b[0], b[1])).history[0];
      expect(acc.loss!).toBeCloseTo(one.loss!, 5);
      expect(Math.abs(acc.grad_norm! - one.grad_norm!) / one.grad_norm!).toBeLessThan(1e-5);
    }
  });

  it('logs the token-weighted mean loss of a logging window, not the mean of micro-batch means', async () => {
    // learning rate 0 keeps the weights: four one-row steps logged as one window = one step over all four rows
    const still = { learningRate: () => 0 };
    const together = (await run(4, 1, still)).history[0].loss!;
    const window = (await run(1, 1, { ...still, loggingSteps: 4 }, 4)).history;
    expect(window.map((r) => r.step)).toEqual([4]);
    expect(window[0].loss!).toBeCloseTo(together, 5);
    const perStep = (await run(1, 1, still, 4)).history.map((r) => r.loss!);
    const meanOfMeans = perStep.reduce((a, b) => a + b, 0) / perStep.length;
    expect(Math.abs(meanOfMeans - together)).toBeGreaterThan(1e-3); // the rows differ enough to tell the two apart
  });

  it('stops with one line and saves nothing when training diverges', async () => {
    const outputDir = mkdtempSync(path.join(tmp, 'nan-'));
    const err = await run(1, 1, { outputDir, learningRate: () => 1e30, saveSteps: 1 }, 4).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FtError);
    expect((err as Error).message).toMatch(/^step \d+: .*(not finite|NaN|Infinity).*training diverged/);
    const step = Number(/^step (\d+)/.exec((err as Error).message)![1]);
    // checkpoints before the failing step are kept, and every saved weight is finite
    const saved = await listCheckpoints(outputDir);
    expect(saved.map((c) => c.step)).toEqual(Array.from({ length: step - 1 }, (_, i) => i + 1));
    for (const c of saved)
      for (const t of (await readPeftAdapter(c.dir)).tensors.values()) expect(t.data.every(Number.isFinite)).toBe(true);
    expect(existsSync(path.join(outputDir, `checkpoint-${step}`))).toBe(false);
  });

  it('stops after the step in progress when asked, with a checkpoint of that step', async () => {
    const outputDir = mkdtempSync(path.join(tmp, 'stop-'));
    let steps = 0;
    const r = await run(1, 1, { outputDir }, 50, {
      onStep: (s) => (steps = s),
      stopRequested: () => (steps >= 2 ? 'SIGINT' : null),
    });
    expect(r).toMatchObject({ steps: 2, interrupted: true, checkpoint: path.join(outputDir, 'checkpoint-2') });
  });
});
