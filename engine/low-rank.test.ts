// addLowRank (engine/low-rank.ts): LoRA's y + scale · (x Aᵀ) Bᵀ for a few rows with no gradient recorded, computed
// without tfjs kernels on wasm, against tfjs-backend-cpu's tf ops, and on wasm to the bits of the same ops; with a
// gradient recorded it is the ops, differentiable in x, A and B (ft's own product gradients: to float32 rounding).
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { expectWasmMatchesCpu } from '../test/backend-runs.ts';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import { addLowRank } from './low-rank.ts';

/** A LoRA's operands for `rows` rows: in 37 (not a multiple of 4), r 8, out 300. */
function operands(rows: number, seed: number) {
  const r = new Rng(seed);
  const rand = (shape: [number, number]) =>
    tf.tensor2d(
      Float32Array.from({ length: shape[0] * shape[1] }, () => r.normal()),
      shape,
    );
  return { y: rand([rows, 300]), x: rand([rows, 37]), a: rand([8, 37]), b: rand([300, 8]) };
}

const SCALE = 16 / Math.sqrt(8); // rsLoRA's alpha / sqrt(r), not a float32 value

/** The plain tf ops: what addLowRank computes. */
const ops = ({ y, x, a, b }: ReturnType<typeof operands>) =>
  tf.add(y, tf.matMul(tf.mul(tf.matMul(x, a, false, true), SCALE), b, false, true));

describe('addLowRank', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  const ROWS = [1, 2, 3, 4, 5, 6]; // 6: past the few-row form

  it("equals tfjs-backend-cpu's ops for 1-6 rows, and gives the same bits on 2 threads as on 1", async () => {
    const outputs = () =>
      Object.fromEntries(
        ROWS.map((rows) => [
          `${rows} rows`,
          tf.tidy(() => {
            const { y, x, a, b } = operands(rows, rows);
            return addLowRank(y, x, a, b, SCALE).dataSync() as Float32Array;
          }),
        ]),
      );
    await expectWasmMatchesCpu(outputs, Object.fromEntries(ROWS.map((rows) => [`${rows} rows`, 1e-4])));
  });

  it.each([1, 2])('on wasm with %i thread(s), gives the bits of the tf ops it stands for', async (threads) => {
    await initBackend('wasm', threads);
    for (const rows of ROWS) {
      const [fused, plain] = tf.tidy(() => {
        const o = operands(rows, 10 + rows);
        return [addLowRank(o.y, o.x, o.a, o.b, SCALE), ops(o)].map((t) => t.dataSync() as Float32Array);
      });
      expect(Buffer.from(fused.buffer).equals(Buffer.from(plain.buffer)), `${rows} rows`).toBe(true);
    }
  });

  it('leaves no tensor behind but its output', async () => {
    await initBackend('wasm', 1);
    const o = operands(2, 3);
    const before = tf.memory().numTensors;
    const out = addLowRank(o.y, o.x, o.a, o.b, SCALE);
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([out, ...Object.values(o)]);
  });

  it('is differentiable in x, A and B under a gradient, as the ops are', async () => {
    await initBackend('wasm', 1);
    const o = operands(3, 7);
    const loss = (f: (x: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor) =>
      tf
        .grads((x: tf.Tensor, a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.square(f(x as tf.Tensor2D, a as tf.Tensor2D, b as tf.Tensor2D))),
        )([o.x, o.a, o.b])
        .map((g) => g.dataSync() as Float32Array);
    const got = loss((x, a, b) => addLowRank(o.y, x, a, b, SCALE));
    const want = loss((x, a, b) => ops({ y: o.y, x, a, b }));
    got.forEach((g, i) => {
      const scale = want[i].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const worst = g.reduce((m, v, j) => Math.max(m, Math.abs(v - want[i][j])), 0);
      expect(worst).toBeLessThanOrEqual(1e-5 * scale);
    });
  });
});
