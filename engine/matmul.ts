// 2-D matrix products that stay on the backends' fast path, with custom gradients that skip what is frozen.
// On wasm, engine/wasm-matmul.ts computes every float32 product whose A is row-major, and products with transposeA
// of 1 or at least 6 rows; transpose flags cost nothing there. Other transposed-A products of 2-5 rows would go to
// XNNPACK, where a transpose flag runs 15-25x slower than an explicit transpose, so mmTN transposes those first.
// Their gradients run in tf.tidy (engine/custom-grad.ts).
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { filledTensor2d } from './filled.ts';
import { type FourBitCodes, fourBitProductCovers, fourBitProductT, unpackedTensor2d } from './four-bit.ts';
import { GEMM_MIN_ROWS } from './wasm-matmul.ts';

/** a [n, k] @ w^T for w [m, k]. */
function mmNT(a: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(a, w, false, true);
}

/** a^T @ b for a [k, n]: the product has n rows. */
function mmTN(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const rows = a.shape[1];
  const free = tf.getBackend() !== 'wasm' || rows === 1 || rows >= GEMM_MIN_ROWS;
  return free ? tf.matMul(a, b, true, false) : tf.matMul(tf.transpose(a), b);
}

/** a @ b for a [n, k], b [k, m], differentiable in both. */
export const mm = customGrad<[tf.Tensor2D, tf.Tensor2D], tf.Tensor2D>(([a, b], save) => {
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy, [sa, sb]) => [mmNT(dy, sb as tf.Tensor2D), mmTN(sa as tf.Tensor2D, dy)],
  };
});

/** x @ w^T for x [n, k] and a small trainable w [m, k] (LoRA's A [r, in] and B [out, r]), differentiable in both. */
export const mmT = customGrad<[tf.Tensor2D, tf.Tensor2D], tf.Tensor2D>(([x, w], save) => {
  save([x, w]);
  return {
    value: mmNT(x, w),
    gradFunc: (dy, [sx, sw]) => [tf.matMul(dy, sw as tf.Tensor2D), mmTN(dy, sx as tf.Tensor2D)],
  };
});

/**
 * x @ w for a frozen (never differentiated) w [k, m]: the backward pass computes dx = dy @ w^T only, skipping the
 * weight gradient that `mm` would spend as much time on as the forward product. w is kept for the backward pass, so
 * it may be a temporary of the caller's tidy scope.
 */
export function mmFrozen(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = customGrad<[tf.Tensor2D], tf.Tensor2D>(([xi], save) => {
    save([w]);
    return { value: tf.matMul(xi, w), gradFunc: (dy, [sw]) => mmNT(dy, sw as tf.Tensor2D) };
  });
  return f(x);
}

/** x @ w^T for a frozen w [m, k] stored untransposed (a tied lm_head: the embedding [vocab, hidden]); dx = dy @ w. */
export function mmFrozenT(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = customGrad<[tf.Tensor2D], tf.Tensor2D>(([xi], save) => {
    save([]);
    return { value: mmNT(xi, w), gradFunc: (dy) => tf.matMul(dy, w) };
  });
  return f(x);
}

/** A weight [m, k] made anew for each product (a dequantized 4-bit weight). */
export interface TransientWeight {
  shape: [number, number]; // [m, k]
  /** writes w row-major [m, k] */
  fill(values: Float32Array): void;
  /** the same weight as 4-bit codes, which wasm unpacks on every thread (engine/four-bit.ts) instead of `fill` */
  fourBit?: FourBitCodes;
}

/** The transient weight's values as a tensor [m, k]. */
function transientTensor(w: TransientWeight): tf.Tensor2D {
  if (w.fourBit && tf.getBackend() === 'wasm') return unpackedTensor2d(w.fourBit);
  return filledTensor2d(w.shape, w.fill);
}

/**
 * x [n, k] @ w^T for a transient weight w [m, k], not differentiated. A few rows of x (decoding) against 4-bit codes
 * on wasm multiply the codes as they are, with no float weight made (engine/four-bit.ts fourBitProductT).
 */
export function matMulTransientT(x: tf.Tensor2D, w: TransientWeight): tf.Tensor2D {
  const { fourBit } = w;
  if (fourBit && tf.getBackend() === 'wasm' && fourBitProductCovers(x.shape[0], fourBit))
    return fourBitProductT(x, fourBit);
  return mmNT(x, transientTensor(w));
}

/** dy [n, m] @ w for a transient weight w [m, k] (the input gradient of matMulTransientT), not differentiated. */
export function matMulTransient(dy: tf.Tensor2D, w: TransientWeight): tf.Tensor2D {
  return tf.matMul(dy, transientTensor(w));
}
