import * as tf from '@tensorflow/tfjs';
import { describe, expect, test } from 'vitest';
import { DenseLinear } from '../model/linear.ts';
import { Rng } from '../util/rng.ts';
import { QuantizedLinear, quantizedLinear } from './linear.ts';
import { dequantize, quantize } from './nf4.ts';

function normal(n: number, seed: number, std = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * std);
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

// [out, in] = [24, 40]: not a multiple of the block size per row, so blocks span rows
const OUT = 24;
const IN = 40;
const N = 5;

function layers(withBias: boolean) {
  const w = normal(OUT * IN, 1, 0.1);
  const bias = withBias ? normal(OUT, 2, 0.5) : null;
  const nf4 = quantizedLinear('nf4')('model.layers.0.self_attn.q_proj', w, OUT, IN, bias) as QuantizedLinear;
  const dense = new DenseLinear(dequantize(nf4.q), OUT, IN, bias);
  return { nf4, dense };
}

describe('QuantizedLinear', () => {
  test('forward equals a DenseLinear holding the dequantized weight, bias included', () => {
    const { nf4, dense } = layers(true);
    const x = tf.tensor2d(normal(N * IN, 3), [N, IN]);
    const y = nf4.apply(x);
    const yd = dense.apply(x);
    expect(y.shape).toEqual([N, OUT]);
    expect(maxAbsDiff(y.dataSync(), yd.dataSync())).toBeLessThan(1e-5);
    tf.dispose([x, y, yd]);
    nf4.dispose();
    dense.dispose();
  });

  test('every product form (engine/matmul.ts picks by row count) equals the dense layer', () => {
    const { nf4, dense } = layers(false);
    // on wasm, (W x^T)^T below 6 rows (XNNPACK's products), x W^T with the transpose flag from 6 rows on
    for (const rows of [2, 10, 40]) {
      const x = tf.tensor2d(normal(rows * IN, 9), [rows, IN]);
      const dy = tf.tensor2d(normal(rows * OUT, 10), [rows, OUT]);
      const run = (l: QuantizedLinear | DenseLinear) =>
        tf.valueAndGrads((xi: tf.Tensor) => l.apply(xi as tf.Tensor2D))([x], dy);
      const [a, b] = [run(nf4), run(dense)];
      expect(maxAbsDiff(a.value.dataSync(), b.value.dataSync()), `${rows} rows`).toBeLessThan(1e-5);
      expect(maxAbsDiff(a.grads[0].dataSync(), b.grads[0].dataSync()), `${rows} rows`).toBeLessThan(1e-5);
      tf.dispose([x, dy, a.value, b.value, ...a.grads, ...b.grads]);
    }
    nf4.dispose();
    dense.dispose();
  });

  test('one row (decoding: matvec4bit on the packed codes off wasm, codes unpacked in the heap on wasm) equals the dense layer, gradient too', () => {
    // in = 128: whole blocks per row; in = 40: blocks of 64 span rows
    for (const [out, inp, kind] of [
      [48, 128, 'nf4'],
      [24, 128, 'fp4'],
      [OUT, IN, 'nf4'],
    ] as const) {
      const w = normal(out * inp, 4, 0.1);
      const q = quantizedLinear(kind)('w', w, out, inp, normal(out, 5, 0.5)) as QuantizedLinear;
      const dense = new DenseLinear(dequantize(q.q), out, inp, q.bias);
      const x = tf.tensor2d(normal(inp, 6), [1, inp]);
      const dy = tf.tensor2d(normal(out, 7), [1, out]);
      const run = (l: QuantizedLinear | DenseLinear) =>
        tf.valueAndGrads((xi: tf.Tensor) => l.apply(xi as tf.Tensor2D))([x], dy);
      const [a, b] = [run(q), run(dense)];
      expect(maxAbsDiff(a.value.dataSync(), b.value.dataSync()), `${kind} [${out}, ${inp}]`).toBeLessThan(1e-5);
      expect(maxAbsDiff(a.grads[0].dataSync(), b.grads[0].dataSync())).toBeLessThan(1e-5);
      tf.dispose([x, dy, a.value, b.value, ...a.grads, ...b.grads]);
      q.dispose();
      dense.dispose();
    }
  });

  test('dx matches central finite differences and the dense layer', () => {
    const { nf4, dense } = layers(true);
    const x = tf.tensor2d(normal(N * IN, 4), [N, IN]);
    const r = tf.tensor2d(normal(N * OUT, 5), [N, OUT]); // loss = sum(r * y): a dy that is not all ones
    const loss = (l: { apply(x: tf.Tensor2D): tf.Tensor2D }) => (xx: tf.Tensor) =>
      tf.sum(tf.mul(r, l.apply(xx as tf.Tensor2D)));
    const dx = tf.grad(loss(nf4))(x);
    const dxDense = tf.grad(loss(dense))(x);
    expect(maxAbsDiff(dx.dataSync(), dxDense.dataSync())).toBeLessThan(1e-4);

    // finite differences in float64 on the dequantized weight (the loss is linear in x: the check is exact up to rounding)
    const W = dequantize(nf4.q);
    const xs = x.dataSync();
    const rs = r.dataSync();
    const f = (xv: Float64Array) => {
      let s = 0;
      for (let n = 0; n < N; n++)
        for (let o = 0; o < OUT; o++) {
          let y = nf4.bias![o];
          for (let i = 0; i < IN; i++) y += xv[n * IN + i] * W[o * IN + i];
          s += rs[n * OUT + o] * y;
        }
      return s;
    };
    const h = 1e-3;
    const g = dx.dataSync();
    for (const k of [0, 7, 41, 99, N * IN - 1]) {
      const xp = Float64Array.from(xs);
      const xm = Float64Array.from(xs);
      xp[k] += h;
      xm[k] -= h;
      expect(Math.abs((f(xp) - f(xm)) / (2 * h) - g[k])).toBeLessThan(1e-4);
    }
    tf.dispose([x, r, dx, dxDense]);
    nf4.dispose();
    dense.dispose();
  });

  test('a trainable variable upstream (x = A z) gets the same gradient through NF4 and dense layers', () => {
    const { nf4, dense } = layers(false);
    const A = tf.tidy(() => tf.variable(tf.tensor2d(normal(N * 8, 6), [N, 8])));
    const z = tf.tensor2d(normal(8 * IN, 7), [8, IN]);
    const grads = (l: { apply(x: tf.Tensor2D): tf.Tensor2D }) =>
      tf.variableGrads(() => tf.sum(tf.square(l.apply(tf.matMul(A, z)))) as tf.Scalar, [A]);
    const g1 = grads(nf4);
    const g2 = grads(dense);
    expect(maxAbsDiff(g1.grads[A.name].dataSync(), g2.grads[A.name].dataSync())).toBeLessThan(
      1e-4 * Math.max(1, g1.value.dataSync()[0]),
    );
    expect(Math.abs(g1.value.dataSync()[0] - g2.value.dataSync()[0])).toBeLessThan(1e-3);
    tf.dispose([A, z, g1.value, g2.value, ...Object.values(g1.grads), ...Object.values(g2.grads)]);
    nf4.dispose();
    dense.dispose();
  });

  test('apply and its gradient leave no tensors behind', () => {
    const { nf4, dense } = layers(true);
    const x = tf.tensor2d(normal(N * IN, 8), [N, IN]);
    const before = tf.memory().numTensors;
    const y = nf4.apply(x);
    y.dispose();
    const dx = tf.grad((xx: tf.Tensor) => tf.sum(nf4.apply(xx as tf.Tensor2D)))(x);
    dx.dispose();
    const A = tf.tidy(() => tf.variable(tf.ones([N, IN])));
    const before2 = tf.memory().numTensors;
    const g = tf.variableGrads(() => tf.sum(nf4.apply(tf.mul(A, x) as tf.Tensor2D)) as tf.Scalar, [A]);
    tf.dispose([g.value, ...Object.values(g.grads)]);
    expect(tf.memory().numTensors).toBe(before2);
    A.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    nf4.dispose();
    dense.dispose();
  });

  test('holds only packed codes: bytes, denseWeight and the factory options', () => {
    const w = normal(64 * 128, 9, 0.05);
    const l = quantizedLinear('nf4')('up_proj', w, 64, 128, null);
    expect(l.bytes()).toBe((64 * 128) / 2 + 128 + 4 + 4); // codes + 8-bit absmax + one nested absmax + offset
    expect(Array.from(l.denseWeight())).toEqual(Array.from(dequantize(quantize(w, [64, 128]))));
    const plain = quantizedLinear('fp4', { doubleQuant: false, blockSize: 128 })(
      'up_proj',
      w,
      64,
      128,
      null,
    ) as QuantizedLinear;
    expect(plain.q.kind).toBe('fp4');
    expect(plain.bytes()).toBe((64 * 128) / 2 + 4 * 64);
    l.dispose();
    plain.dispose();
  });

  test('the factory names the tensor in errors', () => {
    const w = normal(16, 10);
    w[5] = Infinity;
    expect(() => quantizedLinear('nf4')('model.layers.3.mlp.down_proj', w, 4, 4, null)).toThrow(
      /model\.layers\.3\.mlp\.down_proj: non-finite value Infinity at \[1, 1\]/,
    );
  });
});
