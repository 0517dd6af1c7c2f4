// AdamW step and global-norm clipping on LoRA-shaped parameter sets, printed as figures.
// Run: npx tsx bench/optimizer.ts [--backend wasm|cpu|tensorflow]
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice } from '../engine/backend.ts';
import { clipGradNorm } from '../train/clip.ts';
import { AdamW } from '../train/optimizer.ts';

const backendArg = process.argv.indexOf('--backend');
const backend = await initBackend((backendArg > 0 ? process.argv[backendArg + 1] : 'auto') as BackendChoice);

/** LoRA A [r, in] and B [out, r] for every projection of every layer (all-linear). */
function loraShapes(layers: number, hidden: number, kvDim: number, inter: number, r: number): [string, number[]][] {
  const proj: [string, number, number][] = [
    ['q_proj', hidden, hidden],
    ['k_proj', hidden, kvDim],
    ['v_proj', hidden, kvDim],
    ['o_proj', hidden, hidden],
    ['gate_proj', hidden, inter],
    ['up_proj', hidden, inter],
    ['down_proj', inter, hidden],
  ];
  return Array.from({ length: layers }, (_, l) =>
    proj.flatMap(([name, inp, out]): [string, number[]][] => [
      [`${l}.${name}.lora_A`, [r, inp]],
      [`${l}.${name}.lora_B`, [out, r]],
    ]),
  ).flat();
}

async function bench(label: string, shapes: [string, number[]][], reps: number): Promise<void> {
  const params = Object.fromEntries(shapes.map(([n, s]) => [n, tf.variable(tf.randomNormal(s))]));
  const grads = Object.fromEntries(shapes.map(([n, s]) => [n, tf.randomNormal(s)]));
  const count = shapes.reduce((a, [, s]) => a + s[0] * s[1], 0);
  const opt = new AdamW(params, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  const step = () => {
    const { grads: clipped } = clipGradNorm(grads, 1);
    opt.step(clipped, 1e-4);
    tf.dispose(Object.values(clipped));
  };
  step();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) step();
  const ms = (performance.now() - t0) / reps;
  const t1 = performance.now();
  const state = opt.exportState();
  const exportMs = performance.now() - t1;
  console.log(
    `${label.padEnd(34)} ${(count / 1e6).toFixed(2).padStart(6)} M params  clip+AdamW ${ms.toFixed(1).padStart(7)} ms/step` +
      `  (${(((count / ms) * 1e3) / 1e6).toFixed(0)} M params/s)  exportState ${exportMs.toFixed(0)} ms (${Object.keys(state).length} tensors)`,
  );
  opt.dispose();
  tf.dispose([...Object.values(params), ...Object.values(grads)]);
}

console.log(`backend ${backend.name}`);
await bench('tiny preset, all-linear r=8', loraShapes(4, 64, 32, 176, 8), 50);
await bench('TinyLlama-1.1B, all-linear r=16', loraShapes(22, 2048, 256, 5632, 16), 5);
