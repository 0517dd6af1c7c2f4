// LoRA gradients through the whole decoder (RMSNorm, RoPE, GQA attention on both of its paths, SwiGLU, the written-out
// cross-entropy gradient) against central finite differences of the loss.
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { attachLora } from '../adapters/lora.ts';
import { causalLmLoss, disposeLlama, forward } from '../model/llama.ts';
import type { TokenBatch } from '../model/types.ts';
import { Rng } from '../util/rng.ts';
import { randomLlama, randn, tinyConfig } from './random-llama.ts';

const w = randomLlama(tinyConfig({ numHiddenLayers: 2 }), 3);
const adapter = attachLora(w, { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear', useRslora: false }, 0);
const rng = new Rng(9);
// B starts at zero in PEFT's init, which would leave A without gradient: give it values
for (const [key, v] of adapter.variables)
  if (key.includes('lora_B')) v.assign(tf.tensor(randn(rng, v.size, 0.1), v.shape));
afterAll(() => disposeLlama(w));

/** Two rows of T tokens; the second row packs two segments (positions restart, attention stays inside each). */
function packedBatch(T: number): { batch: TokenBatch; labels: Int32Array } {
  const B = 2;
  const n = B * T;
  const cut = Math.floor(T / 2);
  const ids = Int32Array.from({ length: n }, () => rng.int(64));
  const segments = Int32Array.from({ length: n }, (_, i) => (i < T || i % T < cut ? 1 : 2));
  const positions = Int32Array.from({ length: n }, (_, i) => (i < T || i % T < cut ? i % T : (i % T) - cut));
  const labels = Int32Array.from({ length: n }, (_, i) => (i % 4 === 0 || i % T === T - 1 ? -100 : ids[i + 1]));
  return { batch: { B, T, ids, segments, positions }, labels };
}

describe('LoRA gradients through the model', () => {
  // tinyConfig: 2 query heads per kv head, head dim 8: G*T*S*d = 16*T^2, so T = 12 takes the batched attention
  // product and T = 80 the unrolled 2-D products (the switch is at 65536)
  for (const T of [12, 80]) {
    it(`match finite differences with ${T}-token rows`, () => {
      const { batch, labels } = packedBatch(T);
      const loss = () => causalLmLoss(forward(w, batch), labels).loss;
      const vars = adapter.trainableVariables();
      const { value, grads } = tf.variableGrads(loss, vars);
      value.dispose();
      let checked = 0;
      for (const v of vars.filter((_, i) => i % 3 === 0)) {
        const g = grads[v.name].dataSync();
        const data = v.dataSync().slice();
        const i = rng.int(data.length);
        const at = (delta: number) => {
          const moved = data.slice();
          moved[i] += delta;
          v.assign(tf.tensor(moved, v.shape));
          return tf.tidy(() => loss().dataSync()[0]);
        };
        const eps = 1e-2;
        const fd = (at(eps) - at(-eps)) / (2 * eps);
        v.assign(tf.tensor(data, v.shape));
        expect(Math.abs(fd - g[i])).toBeLessThan(2e-3 + 0.05 * Math.abs(fd));
        checked++;
      }
      expect(checked).toBeGreaterThan(8);
      tf.dispose(Object.values(grads));
    });
  }
});
