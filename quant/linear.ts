// The frozen base projection of QLoRA: the weight lives only as packed 4-bit codes and quantized absmax in
// JS typed arrays (outside the wasm heap), is dequantized just in time for each matmul and dropped again.
// Backward gives the gradient with respect to x only (the base is frozen) and dequantizes the weight anew
// rather than keeping the float copy alive between forward and backward.
import * as tf from '@tensorflow/tfjs';
import { customGrad } from '../engine/custom-grad.ts';
import { matMulTransient, matMulTransientT, type TransientWeight } from '../engine/matmul.ts';
import type { Linear, LinearFactory } from '../model/linear.ts';
import {
  dequantize,
  dequantizeRows,
  fourBitCodes,
  matvec4bit,
  quantize,
  quantizedBytes,
  type QuantizeOptions,
  type QuantizedTensor,
  type QuantKind,
} from './nf4.ts';

/** A frozen projection stored block-quantized: NF4, FP4 or int8 codes with their absmax (quant/nf4.ts). */
export class QuantizedLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly b: tf.Tensor1D | null;
  private readonly matmul: (x: tf.Tensor2D) => tf.Tensor2D;
  /** W dequantized anew for each product */
  private readonly transient: TransientWeight;

  constructor(
    readonly q: QuantizedTensor,
    readonly bias: Float32Array | null = null,
  ) {
    [this.outFeatures, this.inFeatures] = q.shape;
    this.b = bias ? tf.tensor1d(bias) : null;
    this.transient = {
      shape: q.shape,
      fill: (w) => dequantizeRows(q, 0, this.outFeatures, w),
      fourBit: fourBitCodes(q),
    };
    // y = x W^T (product below); dx = dy W, with W dequantized again.
    this.matmul = customGrad<[tf.Tensor2D], tf.Tensor2D>(([x]) => ({
      value: this.product(x),
      gradFunc: (dy) => matMulTransient(dy, this.transient),
    }));
  }

  /**
   * y = x W^T. One row (decoding one sequence) off wasm skips the float W: matvec4bit on the packed codes (~3x
   * faster than dequantizing in JS for a matMul). On wasm a few rows multiply the codes in the heap on every thread,
   * each vector unpacked as it is read (engine/four-bit.ts fourBitProductT): stories110M NF4 decoding 175 -> 110
   * ms/token on one thread, 112 -> 65 on two. Otherwise the dequantized W (engine/matmul.ts matMulTransientT).
   */
  private product(x: tf.Tensor2D): tf.Tensor2D {
    const onHeap = tf.getBackend() === 'wasm' && this.transient.fourBit;
    if (x.shape[0] === 1 && !onHeap && this.q.kind !== 'int8' && this.inFeatures % 2 === 0) {
      return tf.tensor2d(matvec4bit(this.q, x.dataSync() as Float32Array), [1, this.outFeatures]);
    }
    return matMulTransientT(x, this.transient);
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
export function quantizedLinear(
  kind: QuantKind = 'nf4',
  opts: Omit<QuantizeOptions, 'kind' | 'name'> = {},
): LinearFactory {
  return (name, weight, outFeatures, inFeatures, bias) =>
    new QuantizedLinear(quantize(weight, [outFeatures, inFeatures], { ...opts, kind, name }), bias);
}
