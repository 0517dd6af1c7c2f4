// QLoRA base-weight figures: packed bytes per parameter, quantize / dequantize throughput, and
// forward+backward time of QuantizedLinear against DenseLinear of the same shape (target: NF4 under 1.5x dense).
// Run: npx tsx bench/quant.ts [--backend wasm|cpu|tensorflow]
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice } from '../engine/backend.ts';
import { DenseLinear, type Linear } from '../model/linear.ts';
import { QuantizedLinear } from '../quant/linear.ts';
import { dequantize, quantize, quantizedBytes, type QuantizeOptions } from '../quant/nf4.ts';
import { Rng } from '../util/rng.ts';
import { report, type Figures } from './report.ts';

const backendArg = process.argv.indexOf('--backend');
const backend = await initBackend((backendArg > 0 ? process.argv[backendArg + 1] : 'auto') as BackendChoice);
const figures: Figures = { backend: backend.name };
const rng = new Rng(0);
const normal = (n: number, std: number) => Float32Array.from({ length: n }, () => std * rng.normal());

/** Median seconds of `reps` timed calls after one warm-up call. */
async function timeIt(f: () => Promise<unknown> | unknown, reps: number): Promise<number> {
  await f();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    t.push((performance.now() - t0) / 1000);
  }
  return t.sort((a, b) => a - b)[Math.floor(reps / 2)];
}

// packed size and throughput on a 4096x4096 projection (Llama-7B q_proj)
const big = normal(4096 * 4096, 0.02);
const variants: [string, QuantizeOptions][] = [
  ['nf4+dq', { kind: 'nf4' }],
  ['nf4', { kind: 'nf4', doubleQuant: false }],
  ['fp4+dq', { kind: 'fp4' }],
  ['int8', { kind: 'int8' }],
];
for (const [label, opts] of variants) {
  figures[`bytes/param ${label} 4096x4096`] = quantizedBytes(quantize(big, [4096, 4096], opts)) / big.length;
}
const qs = await timeIt(() => quantize(big, [4096, 4096]), 3);
figures['quantize nf4+dq M weights/s'] = big.length / qs / 1e6;
const q = quantize(big, [4096, 4096]);
const ds = await timeIt(() => dequantize(q), 5);
figures['dequantize nf4+dq M weights/s'] = big.length / ds / 1e6;

/** Seconds for y = x W^T, loss = sum(r * y), dx, with x [n, in]. */
async function fwdBwd(layer: Linear, n: number): Promise<number> {
  const x = tf.tensor2d(normal(n * layer.inFeatures, 1), [n, layer.inFeatures]);
  const r = tf.tensor2d(normal(n * layer.outFeatures, 1), [n, layer.outFeatures]);
  const step = async () => {
    const { value, grad } = tf.valueAndGrad((xx: tf.Tensor) => tf.sum(tf.mul(r, layer.apply(xx as tf.Tensor2D))))(x);
    await grad.data();
    tf.dispose([value, grad]);
  };
  const s = await timeIt(step, 3);
  tf.dispose([x, r]);
  return s;
}

for (const [out, inp] of [
  [1024, 1024],
  [5632, 2048],
]) {
  const n = 256;
  const w = normal(out * inp, 0.02);
  const nf4 = new QuantizedLinear(quantize(w, [out, inp]));
  const dense = new DenseLinear(w, out, inp);
  const tn = await fwdBwd(nf4, n);
  const td = await fwdBwd(dense, n);
  const shape = `${out}x${inp} n=${n}`;
  figures[`fwd+bwd ms dense ${shape}`] = td * 1000;
  figures[`fwd+bwd ms nf4 ${shape}`] = tn * 1000;
  figures[`nf4/dense ${shape}`] = tn / td;
  nf4.dispose();
  dense.dispose();
}

await report(figures);
