import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { attachLora } from '../adapters/lora.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { randn, randomLlama, tinyConfig } from '../test/random-llama.ts';
import { Rng } from '../util/rng.ts';
import { trainingLoss, type ForwardOptions } from './llama.ts';
import { IGNORE_INDEX, type LlamaWeights, type TrainBatch } from './types.ts';

/** Two rows of T tokens, the second packed with two examples (segments 1, 2). */
function batch(T: number, V: number): TrainBatch {
  const rng = new Rng(3);
  const B = 2;
  const ids = Int32Array.from({ length: B * T }, () => rng.int(V));
  const segments = Int32Array.from({ length: B * T }, (_, i) => (i >= T && i % T >= T / 2 ? 2 : 1));
  const positions = Int32Array.from({ length: B * T }, (_, i) => (segments[i] === 2 ? (i % T) - T / 2 : i % T));
  const labels = Int32Array.from({ length: B * T }, (_, i) =>
    (i + 1) % T === 0 || segments[i + 1] !== segments[i] ? IGNORE_INDEX : ids[i + 1],
  );
  return { B, T, ids, segments, positions, labels };
}

/** Loss and LoRA gradients of one step; LoRA B is random so every factor has a gradient, dropout draws masks. */
function step(w: LlamaWeights, b: TrainBatch, checkpointed: boolean) {
  const adapter = attachLora(w, { r: 4, alpha: 8, dropout: 0.2, targetModules: 'all-linear', useRslora: false }, 7);
  const rng = new Rng(5);
  for (const [name, v] of adapter.variables)
    if (name.endsWith('lora_B.weight')) v.assign(tf.tensor(randn(rng, v.size, 0.1), v.shape));
  adapter.setTraining(true);
  // 48 rows of logits at a time: chunks of the loss end inside a row and one is partial
  const replay = { save: () => adapter.dropoutState(), restore: (s: unknown) => adapter.setDropoutState(s as never) };
  const opts: ForwardOptions = checkpointed ? { recompute: { replay, lossChunkRows: 48 } } : {};
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => trainingLoss(w, b, opts).loss, adapter.trainableVariables());
  const out = {
    loss: value.dataSync()[0],
    grads: Object.fromEntries([...adapter.variables].map(([name, v]) => [name, Array.from(grads[v.name].dataSync())])),
  };
  tf.dispose([value, ...Object.values(grads)]);
  const leaked = tf.memory().numTensors - before;
  adapter.detach();
  return { ...out, leaked };
}

describe('gradient checkpointing', () => {
  // T = 64 with G = 2, d = 8 takes the per-pair attention path (engine/attention.ts), T = 8 the batched one
  for (const [T, base] of [
    [64, 'float'],
    [8, 'float'],
    [64, 'nf4'],
  ] as const) {
    it(`gives the loss and LoRA gradients of the plain backward pass, dropout and a chunked loss included (T=${T}, ${base} base)`, () => {
      const config = tinyConfig({ numHiddenLayers: 3 });
      const w = randomLlama(config, 1);
      if (base === 'nf4') {
        for (const layer of w.layers)
          for (const [p, lin] of Object.entries(layer.proj))
            layer.proj[p as keyof typeof layer.proj] = quantizedLinear('nf4', { blockSize: 32 })(
              p,
              lin.denseWeight(),
              lin.outFeatures,
              lin.inFeatures,
              null,
            );
      }
      const b = batch(T, config.vocabSize);
      const plain = step(w, b, false);
      const ckpt = step(w, b, true);
      expect(ckpt.loss).toBeCloseTo(plain.loss, 5);
      expect(Object.keys(ckpt.grads).sort()).toEqual(Object.keys(plain.grads).sort());
      for (const [k, g] of Object.entries(plain.grads)) {
        const c = ckpt.grads[k];
        const scale = Math.max(...g.map(Math.abs));
        expect(scale, k).toBeGreaterThan(0);
        for (let i = 0; i < g.length; i++)
          expect(Math.abs(c[i] - g[i]), `${k}[${i}]`).toBeLessThan(1e-4 * scale + 1e-7);
      }
      expect(ckpt.leaked).toBe(0);
      expect(plain.leaked).toBe(0);
    });
  }
});
