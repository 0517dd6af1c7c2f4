import { describe, expect, it } from 'vitest';
import { learningRate, lrMultiplier, totalTrainingSteps, warmupSteps } from './schedule.ts';

// Expected values worked out from transformers' lr_lambda formulas by hand (warmup 10, total 100).
describe('LR schedules match transformers', () => {
  const base = { warmupSteps: 10, totalSteps: 100 };

  it('warms up linearly from 0 for every scheduler except constant', () => {
    for (const name of ['cosine', 'linear', 'constant_with_warmup'] as const) {
      expect(lrMultiplier({ ...base, name }, 0)).toBe(0);
      expect(lrMultiplier({ ...base, name }, 5)).toBeCloseTo(0.5, 12);
      expect(lrMultiplier({ ...base, name }, 10)).toBeCloseTo(1, 12);
    }
    expect(lrMultiplier({ ...base, name: 'constant' }, 0)).toBe(1);
  });

  it('cosine decays to half at mid-decay and to zero at the end', () => {
    const s = { ...base, name: 'cosine' as const };
    expect(lrMultiplier(s, 55)).toBeCloseTo(0.5, 12);
    expect(lrMultiplier(s, 25)).toBeCloseTo(0.5 * (1 + Math.cos(Math.PI / 6)), 12); // progress 1/6
    expect(lrMultiplier(s, 100)).toBeCloseTo(0, 12);
    expect(lrMultiplier(s, 130)).toBeGreaterThanOrEqual(0);
  });

  it('linear decays to zero at total steps and stays there', () => {
    const s = { ...base, name: 'linear' as const };
    expect(lrMultiplier(s, 55)).toBeCloseTo(0.5, 12);
    expect(lrMultiplier(s, 91)).toBeCloseTo(0.1, 12);
    expect(lrMultiplier(s, 100)).toBe(0);
    expect(lrMultiplier(s, 120)).toBe(0);
  });

  it('no warmup starts at the peak', () => {
    expect(lrMultiplier({ name: 'cosine', warmupSteps: 0, totalSteps: 4 }, 0)).toBe(1);
    expect(lrMultiplier({ name: 'cosine', warmupSteps: 0, totalSteps: 4 }, 2)).toBeCloseTo(0.5, 12);
    expect(learningRate(2e-3, { name: 'linear', warmupSteps: 0, totalSteps: 4 }, 1)).toBeCloseTo(1.5e-3, 15);
  });

  it('warmup steps come from a count or from ceil(ratio * total)', () => {
    expect(warmupSteps(100, 7, undefined)).toBe(7);
    expect(warmupSteps(105, undefined, 0.1)).toBe(11);
    expect(warmupSteps(100, undefined, undefined)).toBe(0);
  });

  it('total steps: max_steps wins, else epochs * floor(micro-batches / accumulation)', () => {
    expect(totalTrainingSteps({ maxSteps: 50, numEpochs: 3, microBatchesPerEpoch: 100, gradAccum: 4 })).toBe(50);
    expect(totalTrainingSteps({ numEpochs: 3, microBatchesPerEpoch: 103, gradAccum: 4 })).toBe(75);
    expect(totalTrainingSteps({ numEpochs: 1.5, microBatchesPerEpoch: 10, gradAccum: 4 })).toBe(3);
    expect(totalTrainingSteps({ numEpochs: 2, microBatchesPerEpoch: 2, gradAccum: 4 })).toBe(2);
  });
});
