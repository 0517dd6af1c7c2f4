// Chooses the tfjs backend: native TensorFlow (GPU, then CPU) when installed, else wasm, else the plain JS cpu backend.
import * as tf from '@tensorflow/tfjs';
import { FtError } from '../util/errors.ts';
import { installWasmKernels } from './wasm-kernels.ts';

export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];
export type BackendChoice = BackendName | 'auto';

/** Each loader registers its backend with tfjs, or throws when the package is not installed or cannot load. */
const loaders: Record<BackendName, () => Promise<string>> = {
  async tensorflow() {
    // Both native packages register a backend named 'tensorflow'; the GPU build wins when both load.
    const failures: string[] = [];
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        await import(pkg);
        return pkg;
      } catch (e) {
        failures.push(`${pkg}: ${firstLine(e)}`);
      }
    }
    throw new Error(failures.join('; '));
  },
  async wasm() {
    await import('@tensorflow/tfjs-backend-wasm');
    return '@tensorflow/tfjs-backend-wasm';
  },
  async cpu() {
    await import('@tensorflow/tfjs-backend-cpu');
    return '@tensorflow/tfjs-backend-cpu';
  },
};

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}

export interface BackendInfo {
  name: BackendName;
  /** npm package that provided it */
  pkg: string;
}

/**
 * Initializes tfjs on the requested backend, or on the best one present for 'auto'.
 * A backend asked for by name that cannot load is an error naming what is missing.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendInfo> {
  if (choice !== 'auto' && !BACKENDS.includes(choice)) {
    throw new FtError(`unknown backend '${choice}': expected one of auto, ${BACKENDS.join(', ')}`);
  }
  const order: BackendName[] = choice === 'auto' ? [...BACKENDS] : [choice];
  const failures: string[] = [];
  for (const name of order) {
    let pkg: string;
    try {
      pkg = await loaders[name]();
      if (!(await tf.setBackend(name))) throw new Error(`tfjs could not initialize the ${name} backend`);
      await tf.ready();
      if (name === 'wasm') installWasmKernels();
    } catch (e) {
      failures.push(`${name} (${firstLine(e)})`);
      continue;
    }
    return { name, pkg };
  }
  throw new FtError(
    choice === 'auto'
      ? `no tfjs backend could start: ${failures.join('; ')}`
      : `backend '${choice}' is not available: ${failures.join('; ')}. Install it (npm install ${choice === 'tensorflow' ? '@tensorflow/tfjs-node' : '@tensorflow/tfjs-backend-' + choice}) or pass --backend auto`,
  );
}
