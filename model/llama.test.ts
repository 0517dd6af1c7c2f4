import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { randn, randomLlama, rowsBatch, tinyConfig } from '../test/random-llama.ts';
import { Rng } from '../util/rng.ts';
import { DenseLinear, type Linear } from './linear.ts';
import { causalLmLoss, disposeLlama, forward, ropeInvFreq } from './llama.ts';
import type { LlamaWeights, TokenBatch } from './types.ts';

const w = randomLlama(tinyConfig(), 1);
afterAll(() => disposeLlama(w));

function logitsOf(model: LlamaWeights, batch: TokenBatch): number[][][] {
  const t = forward(model, batch);
  const out = t.arraySync();
  t.dispose();
  return out;
}

function maxAbsDiff(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i])));
}

describe('ropeInvFreq', () => {
  it('is theta^(-2i/d) without scaling', () => {
    const f = ropeInvFreq(tinyConfig({ headDim: 8, ropeTheta: 10000 }));
    expect(maxAbsDiff(Array.from(f), [1, 0.1, 0.01, 0.001])).toBeLessThan(1e-7);
  });
  it('llama3 scaling divides low frequencies by the factor and keeps high ones', () => {
    const scaling = {
      type: 'llama3' as const,
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 64,
    };
    const base = ropeInvFreq(tinyConfig({ headDim: 8, ropeTheta: 10000 }));
    const f = ropeInvFreq(tinyConfig({ headDim: 8, ropeTheta: 10000, ropeScaling: scaling }));
    // wavelengths 2pi, 62.8, 628, 6283 vs thresholds 16 (high) and 64 (low)
    expect(f[0]).toBe(base[0]);
    expect(f[2]).toBeCloseTo(base[2] / 8, 9);
    expect(f[3]).toBeCloseTo(base[3] / 8, 9);
    const smooth = (64 / ((2 * Math.PI) / base[1]) - 1) / 3;
    expect(f[1]).toBeCloseTo((1 - smooth) * (base[1] / 8) + smooth * base[1], 7);
  });
});

describe('forward', () => {
  const seq = [5, 9, 3, 17, 30, 2, 44, 8];

  it('is causal: changing a later token leaves earlier logits unchanged', () => {
    const a = logitsOf(w, rowsBatch([seq]));
    const b = logitsOf(w, rowsBatch([[...seq.slice(0, 5), 60, 61, 62]]));
    for (let t = 0; t < 5; t++) expect(maxAbsDiff(a[0][t], b[0][t])).toBeLessThan(1e-5);
    expect(maxAbsDiff(a[0][5], b[0][5])).toBeGreaterThan(1e-3);
  });

  it('packed examples in one row equal each example alone (segments + restarting positions)', () => {
    const x = seq.slice(0, 5);
    const y = seq.slice(5);
    const packed: TokenBatch = {
      B: 1,
      T: 8,
      ids: Int32Array.from([...x, ...y]),
      segments: Int32Array.from([1, 1, 1, 1, 1, 2, 2, 2]),
      positions: Int32Array.from([0, 1, 2, 3, 4, 0, 1, 2]),
    };
    const p = logitsOf(w, packed)[0];
    const ax = logitsOf(w, rowsBatch([x]))[0];
    const ay = logitsOf(w, rowsBatch([y]))[0];
    for (let t = 0; t < 5; t++) expect(maxAbsDiff(p[t], ax[t])).toBeLessThan(1e-4);
    for (let t = 0; t < 3; t++) expect(maxAbsDiff(p[5 + t], ay[t])).toBeLessThan(1e-4);
  });

  it('padding (segment 0) on either side does not change the real positions, and stays finite', () => {
    const x = seq.slice(0, 5);
    const padded: TokenBatch = {
      B: 2,
      T: 7,
      ids: Int32Array.from([...x, 0, 0, 0, 0, ...x]),
      segments: Int32Array.from([1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
      positions: Int32Array.from([0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
    };
    const p = logitsOf(w, padded);
    const alone = logitsOf(w, rowsBatch([x]))[0];
    for (let t = 0; t < 5; t++) {
      expect(maxAbsDiff(p[0][t], alone[t])).toBeLessThan(1e-4);
      expect(maxAbsDiff(p[1][2 + t], alone[t])).toBeLessThan(1e-4);
    }
    expect(p.flat(2).every(Number.isFinite)).toBe(true);
  });

  it('grouped-query attention equals multi-head attention with each K/V head repeated for its group', () => {
    const cfg = tinyConfig({ numAttentionHeads: 4, numKeyValueHeads: 2 });
    const gqa = randomLlama(cfg, 7);
    const mha = randomLlama(tinyConfig({ numKeyValueHeads: 4 }), 7);
    const d = cfg.headDim;
    const repeatHeads = (lin: Linear): Linear => {
      const src = lin.denseWeight(); // [2*d, hidden]: heads 0,1 -> query heads (0,1), (2,3)
      const rows = lin.inFeatures * d;
      const out = new Float32Array(4 * rows);
      for (let h = 0; h < 4; h++)
        out.set(src.subarray(Math.floor(h / 2) * rows, (Math.floor(h / 2) + 1) * rows), h * rows);
      return new DenseLinear(out, 4 * d, lin.inFeatures);
    };
    // same weights everywhere, except mha's k/v hold gqa's heads repeated per group
    mha.embedTokens.dispose();
    mha.embedTokens = tf.clone(gqa.embedTokens);
    mha.norm.dispose();
    mha.norm = tf.clone(gqa.norm);
    mha.lmHead!.dispose();
    mha.lmHead = gqa.lmHead;
    gqa.layers.forEach((layer, l) => {
      const m = mha.layers[l];
      for (const p of Object.values(m.proj)) p.dispose();
      m.inputLayernorm.dispose();
      m.postAttentionLayernorm.dispose();
      m.inputLayernorm = tf.clone(layer.inputLayernorm);
      m.postAttentionLayernorm = tf.clone(layer.postAttentionLayernorm);
      m.proj = { ...layer.proj, k_proj: repeatHeads(layer.proj.k_proj), v_proj: repeatHeads(layer.proj.v_proj) };
    });
    const a = logitsOf(gqa, rowsBatch([seq]))[0];
    const b = logitsOf(mha, rowsBatch([seq]))[0];
    for (let t = 0; t < seq.length; t++) expect(maxAbsDiff(a[t], b[t])).toBeLessThan(1e-4);
    for (const m of mha.layers) {
      m.proj.k_proj.dispose();
      m.proj.v_proj.dispose();
      m.inputLayernorm.dispose();
      m.postAttentionLayernorm.dispose();
    }
    mha.embedTokens.dispose();
    mha.norm.dispose();
    disposeLlama(gqa);
  });

  it('a tied head (lmHead null) equals an untied head holding the embedding matrix', () => {
    const tied = randomLlama(tinyConfig({ tieWordEmbeddings: true }), 3);
    const a = logitsOf(tied, rowsBatch([seq]))[0];
    const head = new DenseLinear(
      tied.embedTokens.dataSync() as Float32Array,
      tied.config.vocabSize,
      tied.config.hiddenSize,
    );
    const b = logitsOf({ ...tied, lmHead: head }, rowsBatch([seq]))[0];
    for (let t = 0; t < seq.length; t++) expect(maxAbsDiff(a[t], b[t])).toBeLessThan(1e-5);
    head.dispose();
    disposeLlama(tied);
  });

  it("logits: 'last' returns the final position of each row", () => {
    const batch = rowsBatch([seq, [...seq].reverse()]);
    const all = logitsOf(w, batch);
    const last = forward(w, batch, undefined, { logits: 'last' });
    expect(last.shape).toEqual([2, 1, w.config.vocabSize]);
    const l = last.arraySync();
    last.dispose();
    for (const b of [0, 1]) expect(maxAbsDiff(l[b][0], all[b][seq.length - 1])).toBeLessThan(1e-5);
  });

  it('rejects token ids outside the vocabulary with a clear error', () => {
    expect(() => forward(w, rowsBatch([[1, 64]]))).toThrow(/id 64 at index 1 is outside the vocabulary \[0, 64\)/);
  });
});

describe('causalLmLoss', () => {
  it('is the mean cross-entropy over labels that are not -100', () => {
    const rng = new Rng(5);
    const [B, T, V] = [2, 3, 5];
    const data = randn(rng, B * T * V, 2);
    const labels = Int32Array.from([1, -100, 4, 0, 2, -100]);
    let expected = 0;
    for (let n = 0; n < B * T; n++) {
      if (labels[n] === -100) continue;
      const row = Array.from(data.subarray(n * V, (n + 1) * V));
      const lse = Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
      expected += lse - row[labels[n]];
    }
    const logits = tf.tensor3d(data, [B, T, V]);
    const { loss, count } = causalLmLoss(logits, labels);
    expect(count).toBe(4);
    expect(loss.dataSync()[0]).toBeCloseTo(expected / 4, 5);
    tf.dispose([logits, loss]);
  });

  it('has the gradient (softmax - onehot) / count on scored rows and zero on ignored rows', () => {
    const rng = new Rng(6);
    const [B, T, V] = [2, 3, 7];
    const data = randn(rng, B * T * V, 3);
    const labels = Int32Array.from([6, -100, 0, 3, -100, 2]);
    const logits = tf.tensor3d(data, [B, T, V]);
    const g = tf.grad((z: tf.Tensor) => causalLmLoss(z as tf.Tensor3D, labels).loss)(logits);
    const got = g.dataSync();
    for (let n = 0; n < B * T; n++) {
      const row = Array.from(data.subarray(n * V, (n + 1) * V));
      const max = Math.max(...row);
      const z = row.reduce((a, x) => a + Math.exp(x - max), 0);
      for (let v = 0; v < V; v++) {
        const expected = labels[n] === -100 ? 0 : (Math.exp(row[v] - max) / z - (v === labels[n] ? 1 : 0)) / 4;
        expect(got[n * V + v]).toBeCloseTo(expected, 6);
      }
    }
    tf.dispose([logits, g]);
  });

  it('scales its gradient with the gradient it receives (a loss weighted by gradient accumulation)', () => {
    const logits = tf.tensor3d([0.5, -1, 2, 0.25, 0, -0.75], [1, 2, 3]);
    const labels = Int32Array.from([2, 0]);
    const grad = (w: number) =>
      tf.grad((z: tf.Tensor) => tf.mul(causalLmLoss(z as tf.Tensor3D, labels).loss, w))(logits);
    const [once, thrice] = [grad(1), grad(3)];
    const got = thrice.dataSync();
    once.dataSync().forEach((g, i) => expect(got[i]).toBeCloseTo(3 * g, 6));
    tf.dispose([logits, once, thrice]);
  });

  it('stays exact when logits are hundreds apart (probabilities far below float32 range)', () => {
    const logits = tf.tensor3d([0, 300, -300, 5, 5, 5], [1, 2, 3]);
    const { loss } = causalLmLoss(logits, Int32Array.from([2, 1]));
    // row 0: lse = 300, target -300 -> 600; row 1: uniform -> ln 3
    expect(loss.dataSync()[0]).toBeCloseTo((600 + Math.log(3)) / 2, 3);
    tf.dispose([logits, loss]);
  });

  it('is 0 with count 0 when every label is ignored', () => {
    const logits = tf.zeros([1, 2, 3]) as tf.Tensor3D;
    const { loss, count } = causalLmLoss(logits, Int32Array.from([-100, -100]));
    expect(count).toBe(0);
    expect(loss.dataSync()[0]).toBe(0);
    tf.dispose([logits, loss]);
  });

  it('rejects a label outside the vocabulary', () => {
    const logits = tf.zeros([1, 2, 3]) as tf.Tensor3D;
    expect(() => causalLmLoss(logits, Int32Array.from([3, -100]))).toThrow(/label 3 at index 0/);
    logits.dispose();
  });
});

/** A projection whose weight is a trainable variable, standing in for an adapter. */
class VariableLinear implements Linear {
  readonly bias = null;
  readonly w: tf.Variable<tf.Rank.R2>;
  constructor(
    weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    this.w = tf.variable(tf.tensor2d(weight, [outFeatures, inFeatures]));
  }
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(x, this.w, false, true);
  }
  denseWeight(): Float32Array {
    return this.w.dataSync() as Float32Array;
  }
  bytes(): number {
    return 4 * this.outFeatures * this.inFeatures;
  }
  dispose(): void {
    this.w.dispose();
  }
}

describe('tensor hygiene', () => {
  // 9 tokens x 2 query heads per KV head = 18 rows: the explicitly transposed a b^T path (decode steps test the other)
  const rows = [
    [1, 5, 9, 13, 2, 40, 41, 42, 43],
    [3, 4, 5, 6, 7, 8, 9, 10, 11],
  ];
  const batch = rowsBatch(rows);
  const labels = Int32Array.from(rows.flatMap((r) => [...r.slice(1), -100]));

  it('a forward + loss leaves no tensors behind', () => {
    const before = tf.memory().numTensors;
    const logits = forward(w, batch);
    const { loss } = causalLmLoss(logits, labels);
    expect(Number.isFinite(loss.dataSync()[0])).toBe(true);
    tf.dispose([logits, loss]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a gradient step through a trainable projection leaves no tensors behind and moves the loss', () => {
    const q = w.layers[0].proj.q_proj;
    const trainable = new VariableLinear(q.denseWeight(), q.outFeatures, q.inFeatures);
    w.layers[0].proj.q_proj = trainable;
    try {
      const lossOf = () => causalLmLoss(forward(w, batch), labels).loss;
      const before = tf.memory().numTensors;
      const l0 = tf.tidy(() => lossOf().dataSync()[0]);
      const { value, grads } = tf.variableGrads(lossOf, [trainable.w]);
      const g = grads[trainable.w.name];
      expect(tf.tidy(() => tf.norm(g).dataSync()[0])).toBeGreaterThan(0);
      tf.tidy(() => trainable.w.assign(tf.sub(trainable.w, tf.mul(g, 0.05))));
      tf.dispose([value, g]);
      const l1 = tf.tidy(() => lossOf().dataSync()[0]);
      expect(l1).toBeLessThan(l0);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      w.layers[0].proj.q_proj = q;
      trainable.dispose();
    }
  });
});
