// The one abstraction every projection in the model goes through, so that float, quantized
// and LoRA-wrapped layers are interchangeable: y = x W^T (+ b), W stored [out, in] as in PyTorch.
import * as tf from '@tensorflow/tfjs';
import { mmFrozenT } from '../engine/matmul.ts';

export interface Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** x: [n, in] -> [n, out]. Differentiable with respect to x and any variables the layer owns. */
  apply(x: tf.Tensor2D): tf.Tensor2D;
  /** The frozen float32 weight, row-major [out, in] (dequantized when stored quantized): for merge and export. */
  denseWeight(): Float32Array;
  /** Optional bias [out] (Qwen2 q/k/v). */
  readonly bias: Float32Array | null;
  /** Bytes held by the frozen weight and bias as stored. */
  bytes(): number;
  /** The trainable variables the layer reads (LoRA factors); none for a frozen layer. */
  trainableVariables?(): tf.Variable[];
  dispose(): void;
}

/** Builds the frozen layer for one projection while a model loads; `weight` is [out, in] float32. */
export type LinearFactory = (
  name: string,
  weight: Float32Array,
  outFeatures: number,
  inFeatures: number,
  bias: Float32Array | null,
) => Linear;

/**
 * A frozen float32 projection held as a tfjs tensor [out, in], as stored, and multiplied as x W^T (engine/matmul.ts
 * mmFrozenT): no transposed copy at load, and decoding's one-row products read W's contiguous rows. Also lm_head.
 */
export class DenseLinear implements Linear {
  private readonly w: tf.Tensor2D; // [out, in]
  private readonly b: tf.Tensor1D | null;

  constructor(
    weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
    readonly bias: Float32Array | null = null,
  ) {
    this.w = tf.tensor2d(weight, [outFeatures, inFeatures]);
    this.b = bias ? tf.tensor1d(bias) : null;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = mmFrozenT(x, this.w);
      return this.b ? tf.add<tf.Tensor2D>(y, this.b) : y;
    }) as tf.Tensor2D;
  }

  denseWeight(): Float32Array {
    return this.w.dataSync() as Float32Array;
  }

  bytes(): number {
    return 4 * (this.outFeatures * this.inFeatures + (this.bias?.length ?? 0));
  }

  dispose(): void {
    this.w.dispose();
    this.b?.dispose();
  }
}

export const denseLinear: LinearFactory = (_name, w, out, inp, b) => new DenseLinear(w, out, inp, b);
