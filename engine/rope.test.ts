// applyRotary (engine/rope.ts) against Hugging Face's apply_rotary_pos_emb written out in float64 (cos and sin of
// position · inv_freq, the d/2 angles twice; q · cos + rotate_half(q) · sin), on tfjs-backend-cpu and wasm; and the
// loop wasm takes when no gradient is recorded to the bits of its tf form under a gradient.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { expectWasmMatchesCpu } from '../test/backend-runs.ts';
import { Rng } from '../util/rng.ts';
import { initBackend } from './backend.ts';
import { applyRotary, RotaryTable } from './rope.ts';

const [B, H, T, D] = [2, 3, 4, 8];
const POSITIONS = Int32Array.from([5, 6, 7, 8, 0, 1, 2, 300]); // [B * T]: a resumed row, a fresh one, a far position
const INV_FREQ = Float64Array.from({ length: D / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / D));

function queries(): Float32Array {
  const r = new Rng(3);
  return Float32Array.from({ length: B * H * T * D }, () => r.normal());
}

/** HF's formula in float64, with the angle rounded to float32 as torch computes it in float32. */
function reference(q: Float32Array): Float64Array {
  const out = new Float64Array(q.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++)
        for (let j = 0; j < D; j++) {
          const i = ((b * H + h) * T + t) * D;
          const angle = Math.fround(POSITIONS[b * T + t] * INV_FREQ[j % (D / 2)]);
          const half = j < D / 2 ? -q[i + j + D / 2] : q[i + j - D / 2];
          out[i + j] = q[i + j] * Math.cos(angle) + half * Math.sin(angle);
        }
  return out;
}

/** applyRotary's output with no gradient recorded, and under one (tf.valueAndGrad's forward). */
function rotated(): { free: Float32Array; taped: Float32Array } {
  return tf.tidy(() => {
    const table = new RotaryTable(INV_FREQ);
    const inputs = table.inputs(POSITIONS, B, T);
    const q = tf.tensor4d(queries(), [B, H, T, D]);
    const free = applyRotary(q, inputs).dataSync() as Float32Array;
    const { value } = tf.valueAndGrad((x: tf.Tensor) => applyRotary(x as tf.Tensor4D, inputs))(q);
    return { free, taped: value.dataSync() as Float32Array };
  });
}

describe('applyRotary', () => {
  afterAll(async () => {
    await initBackend('wasm', 1); // the unit tier shares this worker's backend with other files
  });

  it("is HF's rotary embedding, on tfjs-backend-cpu and on wasm, with and without a gradient recorded", async () => {
    const want = reference(queries());
    const worst = (got: Float32Array) => got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
    await expectWasmMatchesCpu(() => rotated(), { free: 1e-5, taped: 1e-5 });
    for (const backend of ['cpu', 'wasm']) {
      await (backend === 'cpu' ? tf.setBackend('cpu') : initBackend('wasm', 1));
      const { free, taped } = rotated();
      expect(worst(free), backend).toBeLessThan(1e-5);
      expect(worst(taped), backend).toBeLessThan(1e-5);
    }
  });

  it("on wasm, gives its tf form's bits in the loop it runs when no gradient is recorded", async () => {
    await initBackend('wasm', 1);
    const { free, taped } = rotated();
    expect(Buffer.from(free.buffer).equals(Buffer.from(taped.buffer))).toBe(true);
  });
});
