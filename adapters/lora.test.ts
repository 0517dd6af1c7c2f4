import * as tf from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DenseLinear } from '../model/linear.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { LINEAR_NAMES, type LinearName } from '../model/types.ts';
import { randn, randomLlama, SMALL, tinyConfig } from '../test/random-llama.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { attachLora, countParams, formatTrainableParams, LoraLinear, loraScale, type LoraConfig } from './lora.ts';

const golden = JSON.parse(readFileSync(new URL('../test/fixtures/lora/golden.json', import.meta.url), 'utf8'));
const cfg = (over: Partial<LoraConfig> = {}): LoraConfig => ({
  r: 4,
  alpha: 8,
  dropout: 0,
  targetModules: ['q_proj', 'v_proj'],
  useRslora: false,
  ...over,
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A LoraLinear holding the golden W, bias, A, B (torch's numbers). */
function goldenLayer(): { layer: LoraLinear; x: tf.Tensor2D; c: tf.Tensor2D } {
  const g = golden.forward;
  const base = new DenseLinear(Float32Array.from(g.W), g.out, g.in, Float32Array.from(g.bias));
  const layer = new LoraLinear(base, g.r, g.alpha / g.r, 0, Float32Array.from(g.A), Float32Array.from(g.B), () => 0);
  return { layer, x: tf.tensor2d(g.x, [g.n, g.in]), c: tf.tensor2d(g.c, [g.n, g.out]) };
}

describe('LoraLinear', () => {
  it('computes base(x) + alpha/r * x A^T B^T as torch does', () => {
    const { layer, x } = goldenLayer();
    expect(maxAbsDiff(layer.apply(x).dataSync(), golden.forward.y)).toBeLessThan(1e-5);
  });

  it('gives the gradients of A and B that torch autograd gives', () => {
    const { layer, x, c } = goldenLayer();
    const { value, grads } = tf.variableGrads(
      () => tf.sum(tf.mul(tf.tanh(layer.apply(x)), c)) as tf.Scalar,
      [layer.A, layer.B],
    );
    expect(value.dataSync()[0]).toBeCloseTo(golden.forward.loss, 4);
    expect(maxAbsDiff(grads[layer.A.name].dataSync(), golden.forward.dA)).toBeLessThan(1e-4);
    expect(maxAbsDiff(grads[layer.B.name].dataSync(), golden.forward.dB)).toBeLessThan(1e-4);
  });

  it('has gradients of A and B through a float base that match central finite differences', () => {
    const rng = new Rng(7);
    const [out, inp, r, n] = [5, 7, 3, 4];
    const base = new DenseLinear(randn(rng, out * inp, 0.5), out, inp);
    const layer = new LoraLinear(base, r, 2, 0, randn(rng, r * inp, 0.5), randn(rng, out * r, 0.5), () => 0);
    const x = tf.tensor2d(randn(rng, n * inp, 1), [n, inp]);
    const loss = () => tf.sum(tf.sin(layer.apply(x))) as tf.Scalar; // non-linear in A and in B
    const { grads } = tf.variableGrads(loss, [layer.A, layer.B]);
    const eps = 1e-2;
    for (const v of [layer.A, layer.B]) {
      const analytic = grads[v.name].dataSync();
      const values = v.dataSync().slice();
      for (let k = 0; k < values.length; k++) {
        const at = (d: number) => {
          const p = values.slice();
          p[k] += d;
          v.assign(tf.tensor(p, v.shape));
          return loss().dataSync()[0];
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        expect(Math.abs(numeric - analytic[k])).toBeLessThan(2e-3 + 2e-3 * Math.abs(analytic[k]));
      }
      v.assign(tf.tensor(values, v.shape));
    }
  });

  it('has the same output and gradients (A, B, x) through an NF4 base as through a float layer holding its dequantized weight', () => {
    const rng = new Rng(11);
    const [out, inp, r, n] = [32, 64, 4, 3];
    const w0 = randn(rng, out * inp, 0.3);
    const nf4 = quantizedLinear('nf4')('w', w0.slice(), out, inp, randn(rng, out, 0.1));
    expect(maxAbsDiff(nf4.denseWeight(), w0)).toBeGreaterThan(1e-3); // really 4-bit
    const dense = new DenseLinear(nf4.denseWeight(), out, inp, nf4.bias);
    const a = randn(rng, r * inp, 0.2);
    const b = randn(rng, out * r, 0.2);
    const x = tf.tensor2d(randn(rng, n * inp, 1), [n, inp]);
    const c = tf.tensor2d(randn(rng, n * out, 1), [n, out]);
    const run = (base: typeof nf4) => {
      const layer = new LoraLinear(base, r, 2, 0, a, b, () => 0);
      const f = (xx: tf.Tensor2D) => tf.sum(tf.mul(tf.tanh(layer.apply(xx)), c)) as tf.Scalar;
      const { grads } = tf.variableGrads(() => f(x), [layer.A, layer.B]);
      const dx = tf.grad((xx) => f(xx as tf.Tensor2D))(x);
      return {
        y: layer.apply(x).dataSync(),
        dA: grads[layer.A.name].dataSync(),
        dB: grads[layer.B.name].dataSync(),
        dx: dx.dataSync(),
      };
    };
    const q = run(nf4);
    const d = run(dense);
    for (const k of ['y', 'dA', 'dB', 'dx'] as const) expect(maxAbsDiff(q[k], d[k])).toBeLessThan(1e-5);
  });

  it('merges to W + alpha/r * B A equal to torch and to the unmerged layer to 1e-4', () => {
    const { layer, x } = goldenLayer();
    const merged = layer.mergedWeight();
    expect(maxAbsDiff(merged, golden.forward.merged)).toBeLessThan(1e-5);
    const g = golden.forward;
    const viaMerged = new DenseLinear(merged, g.out, g.in, Float32Array.from(g.bias)).apply(x);
    expect(maxAbsDiff(viaMerged.dataSync(), layer.apply(x).dataSync())).toBeLessThan(1e-4);
  });

  it('applies dropout only in training mode, reproducibly from the seed', () => {
    const x = tf.tensor2d(randn(new Rng(1), 3 * SMALL.hiddenSize, 1), [3, SMALL.hiddenSize]);
    const attach = () => {
      const w = randomLlama(SMALL, 1);
      const adapter = attachLora(w, cfg({ dropout: 0.5 }), 5);
      for (const [k, v] of adapter.variables) if (k.endsWith('lora_B.weight')) v.assign(tf.ones(v.shape));
      return { q: w.layers[0].proj.q_proj as LoraLinear, adapter };
    };
    const first = attach();
    const noDropout = new DenseLinear(first.q.mergedWeight(), first.q.outFeatures, first.q.inFeatures)
      .apply(x)
      .dataSync();
    expect(maxAbsDiff(first.q.apply(x).dataSync(), noDropout)).toBeLessThan(1e-5); // eval mode
    first.adapter.setTraining(true);
    const t1 = first.q.apply(x).dataSync();
    const t2 = first.q.apply(x).dataSync();
    expect(maxAbsDiff(t1, noDropout)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(t1, t2)).toBeGreaterThan(1e-2); // a fresh mask each call
    const { grads } = tf.variableGrads(() => tf.sum(tf.square(first.q.apply(x))) as tf.Scalar, [first.q.A, first.q.B]);
    expect(Array.from(grads[first.q.A.name].dataSync()).every(Number.isFinite)).toBe(true); // dropout is differentiable
    const second = attach();
    second.adapter.setTraining(true);
    expect(second.q.apply(x).dataSync()).toEqual(t1); // same seed, same masks
    const state = second.adapter.dropoutState();
    const t3 = second.q.apply(x).dataSync();
    second.adapter.setDropoutState(state);
    expect(second.q.apply(x).dataSync()).toEqual(t3);
  });
});

describe('attachLora', () => {
  it('initializes A uniformly within ±1/sqrt(in) (torch kaiming_uniform_(a=sqrt(5))) and B to zero', () => {
    for (const [fanIn, ref] of Object.entries(golden.kaiming_uniform_a_sqrt5) as [string, { bound: number }][]) {
      expect(1 / Math.sqrt(Number(fanIn))).toBeCloseTo(ref.bound, 12);
    }
    const w = randomLlama(SMALL, 1);
    const adapter = attachLora(w, cfg({ r: 8, targetModules: 'all-linear' }), 42);
    for (const m of adapter.modules) {
      const a = Array.from(m.linear.A.dataSync());
      const bound = 1 / Math.sqrt(m.linear.inFeatures);
      expect(m.linear.A.shape).toEqual([8, m.linear.inFeatures]);
      expect(m.linear.B.shape).toEqual([m.linear.outFeatures, 8]);
      expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(bound);
      expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.9 * bound);
      expect(Math.abs(a.reduce((s, v) => s + v, 0) / a.length)).toBeLessThan(0.2 * bound);
      expect(m.linear.B.dataSync().every((v) => v === 0)).toBe(true);
    }
  });

  it('is reproducible from the seed', () => {
    const a = attachLora(randomLlama(SMALL, 1), cfg(), 9)
      .trainableVariables()
      .map((v) => Array.from(v.dataSync()));
    const b = attachLora(randomLlama(SMALL, 1), cfg(), 9)
      .trainableVariables()
      .map((v) => Array.from(v.dataSync()));
    const c = attachLora(randomLlama(SMALL, 1), cfg(), 10)
      .trainableVariables()
      .map((v) => Array.from(v.dataSync()));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('leaves every projection output unchanged while B = 0', () => {
    const w = randomLlama(SMALL, 1);
    const x = tf.tensor2d(randn(new Rng(2), 3 * SMALL.hiddenSize, 1), [3, SMALL.hiddenSize]);
    const before = w.layers.map((l) => l.proj.q_proj.apply(x).dataSync());
    attachLora(w, cfg({ targetModules: 'all-linear' }), 1);
    w.layers.forEach((l, i) => expect(l.proj.q_proj.apply(x).dataSync()).toEqual(before[i]));
  });

  it('wraps only the targeted projections of the listed layers and keys variables by PEFT names', () => {
    const w = randomLlama(tinyConfig({ ...SMALL, numHiddenLayers: 3 }), 1);
    const adapter = attachLora(w, cfg({ targetModules: ['v_proj', 'down_proj'], layersToTransform: [2, 0] }), 1);
    expect([...adapter.variables.keys()]).toEqual([
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
      'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight',
      'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight',
      'base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight',
      'base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight',
      'base_model.model.model.layers.2.mlp.down_proj.lora_A.weight',
      'base_model.model.model.layers.2.mlp.down_proj.lora_B.weight',
    ]);
    for (const [i, layer] of w.layers.entries()) {
      for (const p of LINEAR_NAMES) {
        const wrapped = (i === 0 || i === 2) && (p === 'v_proj' || p === 'down_proj');
        expect(layer.proj[p] instanceof LoraLinear).toBe(wrapped);
      }
    }
    expect(adapter.trainableVariables().every((v) => v.trainable)).toBe(true);
  });

  it('detach puts the original base layers back', () => {
    const w = randomLlama(SMALL, 1);
    const originals = w.layers.map((l) => ({ ...l.proj }));
    const adapter = attachLora(w, cfg({ targetModules: 'all-linear' }), 1);
    adapter.detach();
    w.layers.forEach((l, i) => {
      for (const p of LINEAR_NAMES) expect(l.proj[p]).toBe(originals[i][p]);
    });
    expect(() => attachLora(w, cfg(), 2)).not.toThrow();
  });

  it('merge returns W + scale B A under Hugging Face tensor names', () => {
    const w = randomLlama(SMALL, 1);
    const adapter = attachLora(w, cfg({ useRslora: true }), 1);
    for (const v of adapter.trainableVariables()) v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', 4));
    const merged = adapter.merge();
    expect(merged.map((m) => m.name)).toEqual([
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.v_proj.weight',
      'model.layers.1.self_attn.q_proj.weight',
      'model.layers.1.self_attn.v_proj.weight',
    ]);
    const m = adapter.modules[0].linear;
    const expected = tf.add(
      tf.tensor2d(m.base.denseWeight(), merged[0].shape),
      tf.mul(tf.matMul(m.B, m.A), 8 / Math.sqrt(4)),
    );
    expect(maxAbsDiff(merged[0].weight(), expected.dataSync())).toBeLessThan(1e-6);
  });

  it('rejects bad configs with one-line errors before touching the model', () => {
    const w = randomLlama(SMALL, 1);
    const cases: [Partial<LoraConfig>, RegExp][] = [
      [
        { targetModules: ['q_proj', 'qkv_proj' as LinearName] },
        /unknown target module\(s\) qkv_proj: the model has q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/,
      ],
      [{ r: 0 }, /r must be a positive integer, got 0/],
      [{ r: -2 }, /r must be a positive integer/],
      [{ alpha: 0 }, /alpha \(lora_alpha\) must be > 0, got 0/],
      [{ dropout: 1 }, /dropout \(lora_dropout\) must be in \[0, 1\), got 1/],
      [{ dropout: -0.1 }, /dropout/],
      [{ layersToTransform: [5] }, /layers_to_transform has 5, expected block indices 0..1/],
    ];
    for (const [over, msg] of cases) {
      expect(() => attachLora(w, cfg(over), 1)).toThrow(FtError);
      expect(() => attachLora(w, cfg(over), 1)).toThrow(msg);
    }
    expect(w.layers.every((l) => LINEAR_NAMES.every((p) => !(l.proj[p] instanceof LoraLinear)))).toBe(true);
  });
});

describe('scale and parameter counts', () => {
  it('scales by alpha/r, or alpha/sqrt(r) with rsLoRA', () => {
    expect(loraScale({ r: 16, alpha: 32, useRslora: false })).toBe(2);
    expect(loraScale({ r: 16, alpha: 32, useRslora: true })).toBe(8);
  });

  it('prints trainable parameters in the format of PEFT print_trainable_parameters', () => {
    const w = randomLlama(SMALL, 1);
    const adapter = attachLora(w, cfg(), 1);
    // hidden 16, heads 4 (head_dim 4), kv heads 2, intermediate 24, vocab 32, 2 layers, untied lm_head
    const perLayer = 16 * 16 + 8 * 16 + 8 * 16 + 16 * 16 + 3 * 24 * 16 + 2 * 16;
    const base = 32 * 16 + 2 * perLayer + 16 + 32 * 16;
    const trainable = 2 * (4 * (16 + 16) + 4 * (16 + 8)); // q: r(in+out), v: r(in+out), per layer
    expect(countParams(w, adapter)).toEqual({ trainable, all: base + trainable });
    const pct = ((100 * trainable) / (base + trainable)).toFixed(4);
    expect(formatTrainableParams(w, adapter)).toBe(
      `trainable params: ${trainable} || all params: ${(base + trainable).toLocaleString('en-US')} || trainable%: ${pct}`,
    );
    expect(formatTrainableParams(w, adapter)).toMatch(
      /^trainable params: 448 \|\| all params: 5,392 \|\| trainable%: 8\.3086$/,
    );
  });
});
