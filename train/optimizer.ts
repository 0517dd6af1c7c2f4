// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization") exactly as torch.optim.AdamW steps it.
// Hand-written because tf.train.adam has no decoupled weight decay and cannot export/import its moments for resume.
import * as tf from '@tensorflow/tfjs';
import { FtError } from '../util/errors.ts';

export interface AdamWConfig {
  beta1: number; // adam_beta1, default 0.9
  beta2: number; // adam_beta2, default 0.999
  eps: number; // adam_epsilon, default 1e-8
  weightDecay: number; // weight_decay, default 0
}

/** The state of one parameter, as torch keeps it: its own step count and first/second moments. */
export interface AdamWParamState {
  step: number;
  m: Float32Array; // exp_avg, same length as the parameter
  v: Float32Array; // exp_avg_sq
}

/** Plain typed arrays, by parameter name: what a checkpoint saves for an exact resume. */
export type AdamWState = Record<string, AdamWParamState>;

interface Slot {
  param: tf.Variable;
  m: tf.Variable;
  v: tf.Variable;
  step: number;
}

/**
 * Re-keys tf.variableGrads output (keyed by each tf.Variable's registry name) by the names the parameters
 * were given to AdamW, so `step(namedGrads(params, grads), lr)` follows a variableGrads call.
 */
export function namedGrads(params: Record<string, tf.Variable>, grads: tf.NamedTensorMap): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [name, v] of Object.entries(params)) if (grads[v.name]) out[name] = grads[v.name];
  return out;
}

export class AdamW {
  private readonly slots = new Map<string, Slot>();

  constructor(
    params: Record<string, tf.Variable>,
    readonly config: AdamWConfig,
  ) {
    for (const [name, param] of Object.entries(params)) {
      this.slots.set(name, {
        param,
        m: zeroVariable(param),
        v: zeroVariable(param),
        step: 0,
      });
    }
  }

  /**
   * One update at learning rate `lr` (already scheduled). Parameters with no entry in `grads` are skipped
   * and keep their step count, as torch skips params whose .grad is None. Gradients are not disposed.
   *   p ← p·(1 − lr·λ);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
   *   p ← p − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + ε)
   */
  step(grads: Record<string, tf.Tensor>, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.config;
    for (const name of Object.keys(grads)) {
      if (!this.slots.has(name)) throw new Error(`AdamW.step: gradient for unknown parameter '${name}'`);
    }
    for (const [name, s] of this.slots) {
      const g = grads[name];
      if (!g) continue;
      s.step += 1;
      const bc1 = 1 - beta1 ** s.step;
      const bc2Sqrt = Math.sqrt(1 - beta2 ** s.step);
      tf.tidy(() => {
        const decayed = weightDecay !== 0 ? tf.mul(s.param, 1 - lr * weightDecay) : s.param;
        const m = tf.add(tf.mul(s.m, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(s.v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
        s.m.assign(m);
        s.v.assign(v);
        s.param.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
      });
    }
  }

  /** Copies of every parameter's step and moments. */
  exportState(): AdamWState {
    const out: AdamWState = {};
    for (const [name, s] of this.slots) {
      out[name] = { step: s.step, m: s.m.dataSync() as Float32Array, v: s.v.dataSync() as Float32Array };
    }
    return out;
  }

  /** Restores a state saved by exportState; every parameter must be present with matching sizes. */
  importState(state: AdamWState, source = 'optimizer state'): void {
    for (const name of Object.keys(state)) {
      if (!this.slots.has(name)) throw new FtError(`${source}: parameter '${name}' is not being trained`);
    }
    for (const [name, s] of this.slots) {
      const st = state[name];
      if (!st) throw new FtError(`${source}: no state for parameter '${name}'`);
      if (st.m.length !== s.param.size || st.v.length !== s.param.size) {
        throw new FtError(
          `${source}: '${name}' has ${st.m.length}/${st.v.length} moment values, expected ${s.param.size}`,
        );
      }
      if (!Number.isInteger(st.step) || st.step < 0)
        throw new FtError(`${source}: '${name}' step must be a non-negative integer`);
      s.step = st.step;
      tf.tidy(() => {
        s.m.assign(tf.tensor(st.m, s.param.shape));
        s.v.assign(tf.tensor(st.v, s.param.shape));
      });
    }
  }

  /** Frees the moment buffers (the parameters belong to the caller). */
  dispose(): void {
    for (const s of this.slots.values()) {
      s.m.dispose();
      s.v.dispose();
    }
  }
}

/** A non-trainable zero variable shaped like `like`; the tidy frees the initial tensor the variable was made from. */
const zeroVariable = (like: tf.Tensor) => tf.tidy(() => tf.variable(tf.zerosLike(like), false));
