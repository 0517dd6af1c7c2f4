// Rotary position embedding (Su et al. 2021) applied the way each backend runs fastest. The model gives the
// inverse frequencies (model/llama.ts ropeInvFreq); this module owns the cos/sin tables and rotate_half.
import * as tf from '@tensorflow/tfjs';
import { heapMemory, onHeap, written } from './heap-compute.ts';
import { mmFrozen } from './matmul.ts';

/** cos and sin per token of a batch, broadcast over heads; on wasm also the rotate_half matrix. */
export interface RotaryInputs {
  cos: tf.Tensor4D; // [B, 1, T, d]
  sin: tf.Tensor4D; // [B, 1, T, d]
  /** x @ rotate = rotate_half(x), [d, d]; null where rotate_half is sliced instead */
  rotate: tf.Tensor2D | null;
}

/** cos/sin of position * inv_freq for positions [0, length), each row [d] = the d/2 angles twice (HF layout). */
export class RotaryTable {
  private length = 0;
  private cos = new Float32Array(0); // [length, d]
  private sin = new Float32Array(0); // [length, d]
  readonly d: number;

  constructor(private readonly invFreq: Float64Array) {
    this.d = invFreq.length * 2;
  }

  /** Grows the table (doubling) to cover `maxPosition`. */
  private cover(maxPosition: number): void {
    if (this.length > maxPosition) return;
    const d = this.d;
    let length = Math.max(64, this.length);
    while (length <= maxPosition) length *= 2;
    const cos = new Float32Array(length * d);
    const sin = new Float32Array(length * d);
    for (let p = 0; p < length; p++) {
      for (let i = 0; i < d / 2; i++) {
        const angle = Math.fround(p * this.invFreq[i]);
        cos[p * d + i] = cos[p * d + i + d / 2] = Math.cos(angle);
        sin[p * d + i] = sin[p * d + i + d / 2] = Math.sin(angle);
      }
    }
    Object.assign(this, { length, cos, sin });
  }

  /** The rotary inputs of B rows of T tokens at `positions` [B*T]. */
  inputs(positions: Int32Array, B: number, T: number): RotaryInputs {
    const d = this.d;
    let maxPosition = 0;
    for (const p of positions) maxPosition = Math.max(maxPosition, p);
    this.cover(maxPosition);
    const cos = new Float32Array(B * T * d);
    const sin = new Float32Array(B * T * d);
    for (let i = 0; i < B * T; i++) {
      const p = positions[i];
      cos.set(this.cos.subarray(p * d, (p + 1) * d), i * d);
      sin.set(this.sin.subarray(p * d, (p + 1) * d), i * d);
    }
    return {
      cos: tf.tensor4d(cos, [B, 1, T, d]),
      sin: tf.tensor4d(sin, [B, 1, T, d]),
      rotate: rotateAsProduct() ? rotateHalfMatrix(d) : null,
    };
  }
}

/**
 * On wasm rotate_half is one 2-D product with a signed permutation matrix: split + neg + concat make strided copies
 * that cost more there than the product (measured on the tiny preset). Elsewhere the slices are the cheap form.
 */
const rotateAsProduct = () => tf.getBackend() === 'wasm';

/** [x1, x2] -> [-x2, x1] on the two halves of the last axis, as a [d, d] matrix R with x @ R = rotate_half(x). */
function rotateHalfMatrix(d: number): tf.Tensor2D {
  const rotate = new Float32Array(d * d);
  for (let j = 0; j < d / 2; j++) {
    rotate[(j + d / 2) * d + j] = -1; // out[j] = -x[j + d/2]
    rotate[j * d + j + d / 2] = 1; // out[j + d/2] = x[j]
  }
  return tf.tensor2d(rotate, [d, d]);
}

/**
 * Most values of x rotated in a loop on wasm when no gradient is recorded (decoding: one token's heads), where the
 * tf form is a product, two multiplies, an add and two reshapes, each a kernel dispatched (~10 us each).
 */
const LOOP_MAX_VALUES = 1 << 16;

/** x * cos + rotate_half(x) * sin; x [B, heads, T, d]. */
export function applyRotary(x: tf.Tensor4D, { cos, sin, rotate }: RotaryInputs): tf.Tensor4D {
  const [B, heads, T, d] = x.shape;
  const heap = !tf.engine().isTapeOn() && x.size <= LOOP_MAX_VALUES ? onHeap(x, cos, sin) : null;
  if (heap) {
    // each value as the tf form computes it: x * cos and ±x' * sin rounded to float32, then their sum
    const [xAt, cosAt, sinAt] = heap.at.map((at) => at / 4);
    return written<tf.Tensor4D>(heap.backend, x.shape, (outAt) => {
      const v = new Float32Array(heapMemory(heap.backend).buffer);
      const out = outAt / 4;
      for (let b = 0; b < B; b++)
        for (let h = 0; h < heads; h++)
          for (let t = 0; t < T; t++) {
            const row = ((b * heads + h) * T + t) * d;
            const angles = (b * T + t) * d;
            for (let j = 0; j < d; j++) {
              const half = j < d / 2 ? -v[xAt + row + j + d / 2] : v[xAt + row + j - d / 2];
              v[out + row + j] =
                Math.fround(v[xAt + row + j] * v[cosAt + angles + j]) + Math.fround(half * v[sinAt + angles + j]);
            }
          }
    });
  }
  let rotated: tf.Tensor4D;
  if (rotate) rotated = tf.reshape(mmFrozen(tf.reshape(x, [B * heads * T, d]), rotate), [B, heads, T, d]);
  else {
    const [x1, x2] = tf.split(x, 2, 3);
    rotated = tf.concat([tf.neg(x2), x1], 3) as tf.Tensor4D;
  }
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}
