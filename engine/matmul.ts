// 2-D matrix products that stay on the backends' fast path.
// Measured on tfjs-backend-wasm 4.22 (2 cores): matMul with transposeA or transposeB set runs 15-25x slower than
// an explicit tf.transpose followed by a plain matMul (e.g. [2048,64]x[64,1024]: 0.3-0.6 vs 7-9 GFLOP/s), and
// tf's built-in MatMul gradient uses those flags. These wrappers transpose explicitly, forward and backward.
// Their gradients run in tf.tidy (engine/custom-grad.ts).
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';
import { filledTensor2d } from './filled.ts';

/** a [n, k] @ w^T for w [m, k], as (w a^T)^T: w is the left operand, which XNNPACK streams rather than packs. */
const viaLeft = (a: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D => tf.transpose(tf.matMul(w, tf.transpose(a)));

/** a @ b for a [n, k], b [k, m], differentiable in both; the gradients use explicit transposes. */
export const mm = customGrad<[tf.Tensor2D, tf.Tensor2D], tf.Tensor2D>(([a, b], save) => {
  save([a, b]);
  return {
    value: tf.matMul(a, b),
    gradFunc: (dy, [sa, sb]) => [tf.matMul(dy, tf.transpose(sb)), tf.matMul(tf.transpose(sa), dy)],
  };
});

/**
 * x @ w^T for x [n, k] and a small trainable w [m, k] (LoRA's A [r, in] and B [out, r]), differentiable in both:
 * dx = dy @ w needs no transpose, and dw is dy^T @ x or (x^T @ dy)^T, whichever transposes the narrower of
 * dy [n, m] and x [n, k], never a full [n, k] activation when m is the small side.
 */
export const mmT = customGrad<[tf.Tensor2D, tf.Tensor2D], tf.Tensor2D>(([x, w], save) => {
  save([x, w]);
  return {
    value: tf.matMul(x, tf.transpose(w)),
    gradFunc: (dy, [sx, sw]) => {
      const [m, k] = sw.shape;
      const dw = m <= k ? tf.matMul(tf.transpose(dy), sx) : tf.transpose(tf.matMul(tf.transpose(sx), dy));
      return [tf.matMul(dy, sw), dw];
    },
  };
});

/**
 * x @ w for a frozen (never differentiated) w [k, m]: the backward pass computes dx = dy @ w^T only,
 * skipping the weight gradient that `mm` would spend as much time on as the forward product; with few rows against
 * w's size it is (w dy^T)^T on wasm (see fewRowsAgainst: [768, 2048] at 256 rows 62 -> 40 ms on one thread).
 * w is kept for the backward pass, so it may be a temporary of the caller's tidy scope.
 */
export function mmFrozen(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = customGrad<[tf.Tensor2D], tf.Tensor2D>(([xi], save) => {
    save([w]);
    return {
      value: tf.matMul(xi, w),
      gradFunc: (dy, [sw]) => {
        const [k, m] = sw.shape;
        return fewRowsAgainst(dy.shape[0], m, k, 1)
          ? viaLeft(dy, sw as tf.Tensor2D)
          : tf.matMul(dy, tf.transpose(sw as tf.Tensor2D));
      },
    };
  });
  return f(x);
}

/**
 * x @ w^T for a frozen w [m, k] stored untransposed (a tied lm_head: the embedding [vocab, hidden]), as
 * (w @ x^T)^T so that no product needs a transpose flag and w is never copied; dx = dy @ w.
 */
export function mmFrozenT(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = customGrad<[tf.Tensor2D], tf.Tensor2D>(([xi], save) => {
    save([]);
    return { value: viaLeft(xi, w), gradFunc: (dy) => tf.matMul(dy, w) };
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
 * fewer than 8 rows and w of at most 32M values, against w^T [k, m] copied once here: mmFrozenT's (w x^T)^T gives
 * XNNPACK a product one column wide, ~3x slower ([32000, 288] with one row: 15 -> 5 ms on one thread, 8 -> 3.4 ms
 * on two). The copy is held until disposed. Otherwise mmFrozenT.
 */
export function repeatedProductT(w: tf.Tensor2D, rows: number): RepeatedProductT {
  if (tf.getBackend() !== 'wasm' || rows >= FEW_ROWS_COPY || w.size > MAX_COPY_VALUES)
    return { apply: (x) => mmFrozenT(x, w), dispose() {} };
  const wT = tf.transpose(w);
  return { apply: (x) => tf.matMul(x, wT), dispose: () => wT.dispose() };
}

/** A weight [m, k] made anew for each product (a dequantized 4-bit weight), which can write itself in either layout. */
export interface TransientWeight {
  shape: [number, number]; // [m, k]
  /** writes w row-major [m, k] */
  fill(values: Float32Array): void;
  /** writes w^T row-major [k, m] */
  fillTransposed(values: Float32Array): void;
}

// On wasm XNNPACK packs a product's right operand anew whenever it is a new tensor (~7 ns per value, one thread, no
// pool), while the left operand streams. A weight that is new on the right (dequantized, or transposed for this
// product) is packed whole every time; put on the left, the product packs the activation instead, at the cost of
// transposing the activation and the result. That pays when the rows are few against the weight's size.
// Measured (one thread, 256 rows, old and new forms alternated in one process): NF4 forward [2048, 768] 80 -> 54 ms,
// [5632, 2048] 947 -> 401 ms, NF4 backward 71 -> 65 and 877 -> 509 ms, float backward [2048, 768] 83 -> 56 ms;
// stories15M's [768, 288] at 1024 rows is faster the plain way (26 against 32 ms). Other backends have no such cost.

/**
 * Whether a product of n rows against a new weight [m, k] goes faster with the weight on the left, on this backend:
 * wasm, and factor * n (m + k) < m k, the values transposed and packed against the weight's values packed (factor 2
 * where putting the weight on the left also costs its transposed dequantization).
 */
function fewRowsAgainst(n: number, m: number, k: number, factor: 1 | 2): boolean {
  return tf.getBackend() === 'wasm' && factor * n * (m + k) < m * k;
}

/** x [n, k] @ w^T for a transient weight w [m, k], not differentiated (see above for the form on wasm). */
export function matMulTransientT(x: tf.Tensor2D, w: TransientWeight): tf.Tensor2D {
  const [m, k] = w.shape;
  if (tf.getBackend() !== 'wasm') return tf.matMul(x, filledTensor2d([m, k], w.fill), false, true);
  if (fewRowsAgainst(x.shape[0], m, k, 1)) return viaLeft(x, filledTensor2d([m, k], w.fill));
  return tf.matMul(x, filledTensor2d([k, m], w.fillTransposed));
}

/** dy [n, m] @ w for a transient weight w [m, k] (the input gradient of matMulTransientT), not differentiated. */
export function matMulTransient(dy: tf.Tensor2D, w: TransientWeight): tf.Tensor2D {
  const [m, k] = w.shape;
  if (fewRowsAgainst(dy.shape[0], m, k, 2)) return viaLeft(dy, filledTensor2d([k, m], w.fillTransposed));
  return tf.matMul(dy, filledTensor2d([m, k], w.fill));
}
