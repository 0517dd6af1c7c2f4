import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import golden from '../test/fixtures/optim/adamw_golden.json' with { type: 'json' };
import { AdamW, namedGrads } from './optimizer.ts';

// Golden: test/fixtures/optim/adamw_golden.py (torch.optim.AdamW, torch 1.13, lr changed every step).
type Named = Record<string, number[]>;
const names = Object.keys(golden.shapes) as (keyof typeof golden.shapes)[];
const config = { beta1: golden.beta1, beta2: golden.beta2, eps: golden.eps, weightDecay: golden.weight_decay };

function makeParams(): Record<string, tf.Variable> {
  return Object.fromEntries(names.map((n) => [n, tf.variable(tf.tensor(golden.init[n], golden.shapes[n]))]));
}

function stepWith(opt: AdamW, i: number): void {
  const grads = Object.fromEntries(names.map((n) => [n, tf.tensor((golden.grads[i] as Named)[n], golden.shapes[n])]));
  opt.step(grads, golden.lrs[i]);
  tf.dispose(Object.values(grads));
}

function expectClose(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(Math.abs(actual[i] - expected[i])).toBeLessThanOrEqual(tol);
}

describe('AdamW matches torch.optim.AdamW', () => {
  it('matches the parameters after every step to 1e-6', () => {
    const params = makeParams();
    const opt = new AdamW(params, config);
    for (let i = 0; i < golden.lrs.length; i++) {
      stepWith(opt, i);
      for (const n of names) expectClose(params[n].dataSync(), (golden.after[i] as Named)[n]);
    }
    const state = opt.exportState();
    for (const n of names) {
      expect(state[n].step).toBe(golden.final_state[n].step);
      expectClose(state[n].m, golden.final_state[n].m);
      expectClose(state[n].v, golden.final_state[n].v, 1e-7);
    }
    opt.dispose();
    tf.dispose(Object.values(params));
  });

  it('continues identically after export -> import into a fresh optimizer', () => {
    const params = makeParams();
    const first = new AdamW(params, config);
    for (let i = 0; i < 3; i++) stepWith(first, i);
    const saved = first.exportState();
    const savedParams = Object.fromEntries(names.map((n) => [n, params[n].dataSync().slice()]));
    first.dispose();

    const resumedParams = Object.fromEntries(
      names.map((n) => [n, tf.variable(tf.tensor(savedParams[n], golden.shapes[n]))]),
    );
    const resumed = new AdamW(resumedParams, config);
    resumed.importState(saved);
    for (let i = 3; i < golden.lrs.length; i++) stepWith(resumed, i);
    for (const n of names) expectClose(resumedParams[n].dataSync(), (golden.after[golden.lrs.length - 1] as Named)[n]);
    resumed.dispose();
    tf.dispose([...Object.values(params), ...Object.values(resumedParams)]);
  });

  it('skips parameters without a gradient and keeps their step count', () => {
    const params = makeParams();
    const opt = new AdamW(params, config);
    const g = tf.ones(golden.shapes.lora_A);
    opt.step({ lora_A: g }, 0.1);
    const st = opt.exportState();
    expect(st.lora_A.step).toBe(1);
    expect(st.lora_B.step).toBe(0);
    expectClose(params.lora_B.dataSync(), golden.init.lora_B, 0);
    opt.dispose();
    tf.dispose([g, ...Object.values(params)]);
  });

  it('rejects a state for different parameters with a clear error', () => {
    const params = makeParams();
    const opt = new AdamW(params, config);
    const st = opt.exportState();
    expect(() => opt.importState({ lora_A: st.lora_A }, 'ckpt/optimizer.safetensors')).toThrow(
      "ckpt/optimizer.safetensors: no state for parameter 'lora_B'",
    );
    expect(() => opt.importState({ ...st, lora_B: { ...st.lora_B, m: new Float32Array(2) } })).toThrow(/expected 6/);
    opt.dispose();
    tf.dispose(Object.values(params));
  });

  it('takes tf.variableGrads output re-keyed by parameter name', () => {
    const params = { w: tf.variable(tf.tensor1d([1, -2])) };
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(params.w)), [params.w]);
    const opt = new AdamW(params, { ...config, weightDecay: 0 });
    opt.step(namedGrads(params, grads), 0.1);
    // first Adam step moves each weight by lr * sign(grad) (up to eps)
    expectClose(params.w.dataSync(), [0.9, -1.9], 1e-6);
    opt.dispose();
    tf.dispose([value, ...Object.values(grads), params.w]);
  });

  it('leaks no tensors per step', () => {
    const params = makeParams();
    const opt = new AdamW(params, config);
    stepWith(opt, 0);
    const before = tf.memory().numTensors;
    for (let i = 1; i < golden.lrs.length; i++) stepWith(opt, i);
    opt.importState(opt.exportState());
    expect(tf.memory().numTensors).toBe(before);
    opt.dispose();
    tf.dispose(Object.values(params));
  });
});
