import { describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from './backend.ts';

describe('initBackend', () => {
  test('starts wasm when asked and runs a gradient through it', async () => {
    const info = await initBackend('wasm');
    expect(info.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(x, x)))(tf.tensor1d([1, 2, 3]));
    expect(Array.from(g.dataSync())).toEqual([2, 4, 6]);
  });

  test('auto picks a backend that is present', async () => {
    const info = await initBackend('auto');
    expect(['tensorflow', 'wasm', 'cpu']).toContain(info.name);
    await initBackend('wasm');
  });

  test('a missing native backend is a clear error naming the package', async () => {
    let native = true;
    try {
      await import('@tensorflow/tfjs-node' as string);
    } catch {
      native = false;
    }
    if (native) return; // installed here: nothing missing to report
    await expect(initBackend('tensorflow')).rejects.toThrow(/backend 'tensorflow' is not available.*tfjs-node/);
    await initBackend('wasm');
  });

  test('an unknown backend name is rejected', async () => {
    await expect(initBackend('metal' as never)).rejects.toThrow(/unknown backend 'metal'/);
  });
});
