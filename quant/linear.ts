// The frozen base projection of QLoRA: the weight lives only as packed 4-bit codes and quantized absmax in
// JS typed arrays (outside the wasm heap), is dequantized just in time for each matmul and dropped again.
// Backward gives the gradient with respect to x only (the base is frozen) and dequantizes the weight anew
// rather than keeping the float copy alive between forward and backward.
import * as tf from '@tensorflow/tfjs';
import type { Linear, LinearFactory } from '../model/linear.ts';
import { dequantize, quantize, quantizedBytes, type QuantizeOptions, type QuantizedTensor, type QuantKind } from './nf4.ts';

export class NF4Linear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly b: tf.Tensor1D | null;
  private readonly matmul: (x: tf.Tensor2D) => tf.Tensor2D;

  constructor(
    readonly q: QuantizedTensor,
    readonly bias: Float32Array | null = null,
  ) {
    [this.outFeatures, this.inFeatures] = q.shape;
    this.b = bias ? tf.tensor1d(bias) : null;
    // y = x W^T; dy/dx^T: dx = dy W. W is a temporary [out, in] tensor in both directions.
    // matMul(x, W, false, true) is many times slower than a plain matMul on the wasm backend (XNNPACK), so the
    // forward transposes W first (a cheap native op) and multiplies untransposed; for a few rows (decoding) it
    // computes (W x^T)^T instead, which skips transposing W and XNNPACK's packing of it (measured: faster below
    // ~16 rows, ~5% slower for training batches).
    const f = (x: tf.Tensor2D) => ({
      value: x.shape[0] < 16 ? tf.transpose(tf.matMul(this.weightTensor(), tf.transpose(x))) : tf.matMul(x, tf.transpose(this.weightTensor())),
      gradFunc: (dy: tf.Tensor2D) => tf.tidy(() => tf.matMul(dy, this.weightTensor())),
    });
    this.matmul = tf.customGrad(f as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor2D) => tf.Tensor2D;
  }

  /** The dequantized weight as a tensor [out, in]; the caller's tidy scope disposes it. */
  private weightTensor(): tf.Tensor2D {
    return tf.tensor2d(dequantize(this.q), [this.outFeatures, this.inFeatures]);
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = this.matmul(x);
      return this.b ? tf.add<tf.Tensor2D>(y, this.b) : y;
    });
  }

  denseWeight(): Float32Array {
    return dequantize(this.q);
  }

  bytes(): number {
    return quantizedBytes(this.q) + 4 * (this.bias?.length ?? 0);
  }

  dispose(): void {
    this.b?.dispose();
  }
}

/**
 * A LinearFactory that quantizes each projection as the model loads (`loadLlama(dir, { linear: quantizedLinear('nf4') })`).
 * The float32 weight handed in is not kept: once this returns, only the packed form refers to its values.
 */
export function quantizedLinear(kind: QuantKind = 'nf4', opts: Omit<QuantizeOptions, 'kind' | 'name'> = {}): LinearFactory {
  return (name, weight, outFeatures, inFeatures, bias) =>
    new NF4Linear(quantize(weight, [outFeatures, inFeatures], { ...opts, kind, name }), bias);
}
