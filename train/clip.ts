// Gradient clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_(params, max_norm) with norm_type 2.
import * as tf from '@tensorflow/tfjs';

export type NamedGrads = Record<string, tf.Tensor>;

export interface Clipped {
  /** New gradient tensors (the caller disposes them and, separately, the inputs). */
  grads: NamedGrads;
  /** The total norm before clipping, as clip_grad_norm_ returns it. */
  totalNorm: number;
}

/** sqrt(sum over all gradients of sum(g^2)): the norm of all gradients seen as one vector. */
export function globalNorm(grads: NamedGrads): number {
  const list = Object.values(grads);
  if (list.length === 0) return 0;
  const sq = tf.tidy(() => tf.addN(list.map((g) => tf.sum(tf.square(g)))));
  const norm = Math.sqrt(sq.dataSync()[0]);
  sq.dispose();
  return norm;
}

/**
 * Scales every gradient by min(1, maxNorm / (totalNorm + 1e-6)), torch's clip coefficient.
 * maxNorm <= 0 or Infinity disables clipping (HF Trainer's max_grad_norm 0) but still reports the norm.
 */
export function clipGradNorm(grads: NamedGrads, maxNorm: number): Clipped {
  const totalNorm = globalNorm(grads);
  const clipping = maxNorm > 0 && Number.isFinite(maxNorm);
  const coef = clipping ? Math.min(1, maxNorm / (totalNorm + 1e-6)) : 1;
  const out: NamedGrads = {};
  for (const [name, g] of Object.entries(grads)) out[name] = coef === 1 ? tf.clone(g) : tf.mul(g, coef);
  return { grads: out, totalNorm };
}
