// LoRA layer cost at TinyLlama-1.1B projection shapes, printed as figures: forward+backward of the base alone,
// of base + LoRA (x A^T then B^T), of base + a materialized B·A (what ft avoids), and one merge (W + scale·B·A).
// Run: npx tsx bench/lora.ts [--backend wasm|cpu|tensorflow]
import * as tf from '@tensorflow/tfjs';
import { LoraLinear } from '../adapters/lora.ts';
import { initBackend, type BackendChoice } from '../engine/backend.ts';
import { mm } from '../engine/matmul.ts';
import { DenseLinear } from '../model/linear.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { Rng } from '../util/rng.ts';

const backendArg = process.argv.indexOf('--backend');
const backend = await initBackend((backendArg > 0 ? process.argv[backendArg + 1] : 'auto') as BackendChoice);
const rng = new Rng(0);
const rand = (n: number, std: number) => Float32Array.from({ length: n }, () => std * rng.normal());

function time(reps: number, f: () => void): number {
  f(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) f();
  return (performance.now() - t0) / reps;
}

function bench(name: string, out: number, inp: number, tokens: number, r: number, reps: number): void {
  const w = rand(out * inp, 0.02);
  const dense = new DenseLinear(w, out, inp);
  const lora = new LoraLinear(dense, r, 2, 0, rand(r * inp, 1 / Math.sqrt(inp)), rand(out * r, 0.01), () => 0);
  const nf4Lora = new LoraLinear(
    quantizedLinear('nf4')('w', w.slice(), out, inp, null),
    r,
    2,
    0,
    rand(r * inp, 1 / Math.sqrt(inp)),
    rand(out * r, 0.01),
    () => 0,
  );
  const x = tf.randomNormal([tokens, inp]) as tf.Tensor2D;
  const step = (apply: (x: tf.Tensor2D) => tf.Tensor2D, vars: tf.Variable[]) => () => {
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(apply(x))) as tf.Scalar, vars);
    value.dataSync();
    tf.dispose([value, ...Object.values(grads)]);
  };
  const baseOnly = time(reps, () => {
    const y = dense.apply(x);
    y.dataSync();
    y.dispose();
  });
  const thin = time(
    reps,
    step((xx) => lora.apply(xx), [lora.A, lora.B]),
  );
  const materialized = time(
    reps,
    step(
      (xx) =>
        tf.tidy(() => tf.add(dense.apply(xx), tf.mul(mm(xx, tf.transpose(mm(lora.B, lora.A))), 2))) as tf.Tensor2D,
      [lora.A, lora.B],
    ),
  );
  const nf4 = time(
    reps,
    step((xx) => nf4Lora.apply(xx), [nf4Lora.A, nf4Lora.B]),
  );
  const merge = time(Math.max(1, reps >> 1), () => lora.mergedWeight());
  console.log(
    `${name.padEnd(22)} [${out}x${inp}] r=${r} ${tokens} tok: base fwd ${baseOnly.toFixed(1)} ms | LoRA fwd+bwd ${thin.toFixed(1)} ms` +
      ` | materialized B·A fwd+bwd ${materialized.toFixed(1)} ms | NF4 base + LoRA fwd+bwd ${nf4.toFixed(1)} ms | merge ${merge.toFixed(1)} ms`,
  );
  tf.dispose(x);
  lora.dispose();
  nf4Lora.dispose();
}

console.log(`backend ${backend.name}`);
bench('TinyLlama q_proj', 2048, 2048, 256, 16, 5);
bench('TinyLlama gate_proj', 5632, 2048, 256, 16, 3);
