// 2-D matrix products that stay on the backends' fast path, with custom gradients that skip what is frozen.
// On wasm, engine/wasm-matmul.ts computes products of 6 rows and more, where transpose flags cost nothing; fewer
// rows go to XNNPACK, where matMul with transposeA or transposeB set runs 15-25x slower than an explicit transpose
// (e.g. [2048,64]x[64,1024]: 0.3-0.6 vs 7-9 GFLOP/s). There these wrappers transpose explicitly, the small side.
// Their gradients run in tf.tidy (engine/custom-grad.ts).
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { filledTensor2d } from './filled.ts';
import { GEMM_MIN_ROWS } from './wasm-matmul.ts';

/** Whether a product of `rows` rows takes a transpose flag at no cost on this backend. */
const flagsAreFree = (rows: number): boolean => tf.getBackend() !== 'wasm' || rows >= GEMM_MIN_ROWS;

/**
 * a [n, k] @ w^T for w [m, k]. Where the flag is not free (few rows on wasm), as (w a^T)^T: only the small a and
 * the result are transposed, and XNNPACK streams w rather than packing it.
 */
function mmNT(a: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  if (flagsAreFree(a.shape[0])) return tf.matMul(a, w, false, true);
  return tf.transpose(tf.matMul(w, tf.transpose(a)));
}

/** a^T @ b for a [k, n]: the product has n rows. */
function mmTN(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return flagsAreFree(a.shape[1]) ? tf.matMul(a, b, true, false) : tf.matMul(tf.transpose(a), b);
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

/** Rows of x below which a transposed copy of w pays on wasm for x @ w^T (measured crossover ~8 on [32000, 288]). */
const FEW_ROWS_COPY = 8;
/**
 * Largest w (values) copied so: the copy and XNNPACK's packing of it hold twice its size in the wasm heap, 256 MiB
 * here (stories110M's head is 24.6M values; TinyLlama's 65.5M would cost 0.5 GiB for ~4% of its decoding time).
 */
const MAX_COPY_VALUES = 32 * 2 ** 20;

/** x @ w^T for one frozen weight, over many products; holds what it made until disposed. */
export interface RepeatedProductT {
  apply(x: tf.Tensor2D): tf.Tensor2D;
  dispose(): void;
}

/**
 * x @ w^T for a frozen w [m, k] stored untransposed and many x of `rows` rows each (decoding's head). On wasm with
 * fewer than 8 rows and w of at most 32M values, against w^T [k, m] copied once here: (w x^T)^T gives XNNPACK a
 * product one column wide, ~3x slower ([32000, 288] with one row: 15 -> 5 ms on one thread, 8 -> 3.4 ms on two).
 * The copy is held until disposed. Otherwise mmFrozenT.
 */
export function repeatedProductT(w: tf.Tensor2D, rows: number): RepeatedProductT {
  if (tf.getBackend() !== 'wasm' || rows >= FEW_ROWS_COPY || w.size > MAX_COPY_VALUES)
    return { apply: (x) => mmFrozenT(x, w), dispose() {} };
  const wT = tf.transpose(w);
  return { apply: (x) => tf.matMul(x, wT), dispose: () => wT.dispose() };
}

/** A weight [m, k] made anew for each product (a dequantized 4-bit weight). */
export interface TransientWeight {
  shape: [number, number]; // [m, k]
  /** writes w row-major [m, k] */
  fill(values: Float32Array): void;
}

/** x [n, k] @ w^T for a transient weight w [m, k], not differentiated. */
export function matMulTransientT(x: tf.Tensor2D, w: TransientWeight): tf.Tensor2D {
  return mmNT(x, filledTensor2d(w.shape, w.fill));
}

/** dy [n, m] @ w for a transient weight w [m, k] (the input gradient of matMulTransientT), not differentiated. */
export function matMulTransient(dy: tf.Tensor2D, w: TransientWeight): tf.Tensor2D {
  return tf.matMul(dy, filledTensor2d(w.shape, w.fill));
}
