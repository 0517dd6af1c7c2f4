// Runs one computation on tfjs-backend-cpu (the reference), on wasm with 1 thread and with 2 (ft's kernels on the
// pool), and checks wasm against the reference within a tolerance and 2 threads against 1 to the bit; where OpenBLAS
// is installed, on it too at 1 and 2 threads, within the tolerance (it does not promise one thread's bits on two).
// The caller's file must restore the shared backend after (initBackend('wasm', 1) in afterAll).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { expect } from 'vitest';
import { initBackend } from '../engine/backend.ts';
import { blas } from '../engine/blas.ts';
import { withoutBlas } from '../engine/heap-compute.ts';

/** `outputs` computes named float32 results; each must be within tolerance[name] of the cpu backend's. */
export async function expectWasmMatchesCpu(
  outputs: () => Record<string, Float32Array>,
  tolerance: Record<string, number>,
): Promise<void> {
  await tf.setBackend('cpu');
  const reference = outputs();
  const within = (run: Record<string, Float32Array>, label: string) => {
    for (const name of Object.keys(reference)) {
      expect(run[name].length, `${name}, ${label}`).toBe(reference[name].length);
      let worst = 0;
      for (let j = 0; j < run[name].length; j++) worst = Math.max(worst, Math.abs(run[name][j] - reference[name][j]));
      expect(worst, `${name}, ${label}`).toBeLessThan(tolerance[name]);
    }
  };
  await initBackend('wasm', 1);
  const one = withoutBlas(outputs);
  const onBlas = blas() ? [outputs()] : [];
  await initBackend('wasm', 2);
  const two = withoutBlas(outputs);
  if (blas()) onBlas.push(outputs());
  within(one, "ft's kernels");
  for (const name of Object.keys(reference))
    expect(Buffer.from(two[name].buffer).equals(Buffer.from(one[name].buffer)), `${name} on 2 threads`).toBe(true);
  onBlas.forEach((run, i) => within(run, `OpenBLAS, ${i + 1} thread(s)`));
}
