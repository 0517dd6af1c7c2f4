import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { mm, mmFrozen, mmFrozenT, mmT } from './matmul.ts';
import { Rng } from '../util/rng.ts';

const rand = (rng: Rng, shape: [number, number]) =>
  tf.tensor2d(
    Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal()),
    shape,
  );
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

describe('matmul wrappers', () => {
  test('mm gives the same value and gradients as tf.matMul', () => {
    const rng = new Rng(1);
    const a = rand(rng, [5, 3]);
    const b = rand(rng, [3, 4]);
    const up = rand(rng, [5, 4]); // weights the output so each gradient entry differs
    const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(mm(x as tf.Tensor2D, y as tf.Tensor2D), up)))([
      a,
      b,
    ]);
    const ref = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
      tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), up)),
    )([a, b]);
    expect(maxDiff(mm(a, b), tf.matMul(a, b))).toBeLessThan(1e-6);
    expect(maxDiff(ours[0], ref[0])).toBeLessThan(1e-5);
    expect(maxDiff(ours[1], ref[1])).toBeLessThan(1e-5);
  });

  test('mmFrozen differentiates the input only, and matches tf.matMul', () => {
    const rng = new Rng(2);
    const x = rand(rng, [6, 3]);
    const w = rand(rng, [3, 2]);
    const up = rand(rng, [6, 2]);
    const before = tf.memory().numTensors;
    const g = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(mmFrozen(xi as tf.Tensor2D, w), up)))(x);
    const ref = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(tf.matMul(xi as tf.Tensor2D, w), up)))(x);
    expect(maxDiff(g, ref)).toBeLessThan(1e-5);
    // a weight that is a temporary of the forward's tidy scope is kept alive for the backward pass
    const g2 = tf.grad((xi: tf.Tensor) => tf.tidy(() => tf.sum(tf.mul(mmFrozen(xi as tf.Tensor2D, tf.mul(w, 1)), up))))(
      x,
    );
    expect(maxDiff(g2, ref)).toBeLessThan(1e-5);
    tf.dispose([g, ref, g2]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('mmFrozen with fewer rows than a GEMM tile (the few-row products on wasm) matches tf.matMul', () => {
    const rng = new Rng(6);
    const x = rand(rng, [2, 16]);
    const w = rand(rng, [16, 12]);
    const up = rand(rng, [2, 12]);
    const g = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(mmFrozen(xi as tf.Tensor2D, w), up)))(x);
    const ref = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(tf.matMul(xi as tf.Tensor2D, w), up)))(x);
    expect(maxDiff(g, ref)).toBeLessThan(1e-5);
    tf.dispose([x, w, up, g, ref]);
  });

  test('mmFrozenT is x @ w^T for a frozen w kept untransposed, with the input gradient dy @ w', () => {
    const rng = new Rng(3);
    const x = rand(rng, [5, 4]);
    const w = rand(rng, [7, 4]);
    const up = rand(rng, [5, 7]);
    const before = tf.memory().numTensors;
    const y = mmFrozenT(x, w);
    const ref = tf.matMul(x, w, false, true);
    expect(maxDiff(y, ref)).toBeLessThan(1e-5);
    const g = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(mmFrozenT(xi as tf.Tensor2D, w), up)))(x);
    const gRef = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(tf.matMul(xi as tf.Tensor2D, w, false, true), up)))(x);
    expect(maxDiff(g, gRef)).toBeLessThan(1e-5);
    tf.dispose([y, ref, g, gRef]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('mmT is x @ w^T with gradients in x and w, for a wide and a narrow w, with few rows and with many', () => {
    const rng = new Rng(4);
    for (const [m, k, n] of [
      [3, 6, 5],
      [6, 3, 5],
      [3, 6, 9], // 6 rows or more: the GEMM on wasm; fewer: the few-row products (mmTN's 3-row a^T explicitly transposed)
      [9, 7, 13],
    ]) {
      const x = rand(rng, [n, k]);
      const w = rand(rng, [m, k]);
      const up = rand(rng, [n, m]);
      const before = tf.memory().numTensors;
      const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(mmT(a as tf.Tensor2D, b as tf.Tensor2D), up));
      const ref = (a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, false, true), up));
      const [gx, gw] = tf.grads(f)([x, w]);
      const [rx, rw] = tf.grads(ref)([x, w]);
      expect(maxDiff(gx, rx)).toBeLessThan(1e-5);
      expect(maxDiff(gw, rw)).toBeLessThan(1e-5);
      tf.dispose([gx, gw, rx, rw]);
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});
