// Runs one computation on tfjs-backend-cpu (the reference), on wasm with 1 thread and with 2 (ft's kernels on the
// pool), and checks wasm against the reference within a tolerance and 2 threads against 1 to the bit. The caller's
// file must restore the shared backend after (initBackend('wasm', 1) in afterAll).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { expect } from 'vitest';
import { initBackend } from '../engine/backend.ts';

/** `outputs` computes named float32 results; each must be within tolerance[name] of the cpu backend's. */
export async function expectWasmMatchesCpu(
  outputs: () => Record<string, Float32Array>,
  tolerance: Record<string, number>,
): Promise<void> {
  await tf.setBackend('cpu');
  const reference = outputs();
  await initBackend('wasm', 1);
  const one = outputs();
  await initBackend('wasm', 2);
  const two = outputs();
  for (const name of Object.keys(reference)) {
    expect(one[name].length, name).toBe(reference[name].length);
    let worst = 0;
    for (let j = 0; j < one[name].length; j++) worst = Math.max(worst, Math.abs(one[name][j] - reference[name][j]));
    expect(worst, name).toBeLessThan(tolerance[name]);
    expect(Buffer.from(two[name].buffer).equals(Buffer.from(one[name].buffer)), `${name} on 2 threads`).toBe(true);
  }
}
