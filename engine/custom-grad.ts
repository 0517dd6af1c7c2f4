// tf.customGrad with types, and with its gradient run inside tf.tidy: tfjs calls a custom gradient outside any scope
// of its own, so the gradient's temporaries would otherwise live until the whole backward pass ends. When no gradient
// is being recorded (generation, evaluation, or inside another custom op's forward), the op runs its forward as plain
// kernels in a tidy: tf.customGrad's kernel scope costs as much as a kernel, and a stories15M decode token ran 164 of
// them around its 420 kernels (16.2 -> 13.9 ms/token on 2 threads, 19.4 -> 17.5 on 1, one process taking turns).
import * as tf from '@tensorflow/tfjs';

/** The forward half of a custom op: its value, and how dy becomes one gradient per input (in input order). */
export interface CustomOp<Out extends tf.Tensor> {
  value: Out;
  /** dy and the tensors `save` kept -> the gradients with respect to the inputs */
  gradFunc: (dy: NoInfer<Out>, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
}

/**
 * A differentiable op from `f(inputs, save)`; the tensors passed to `save` reach gradFunc. Inputs are the tensors the
 * op is differentiated in (tensors it closes over are constants to it).
 */
export function customGrad<In extends tf.Tensor[], Out extends tf.Tensor>(
  f: (inputs: In, save: tf.GradSaveFunc) => CustomOp<Out>,
): (...inputs: In) => Out {
  const withGradient = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const { value, gradFunc } = f(args as In, save);
    return { value, gradFunc: (dy: Out, saved: tf.Tensor[]) => tf.tidy(() => gradFunc(dy, saved)) };
  }) as never) as unknown as (...inputs: In) => Out;
  const engine = tf.engine();
  return (...inputs: In) => (engine.isTapeOn() ? withGradient(...inputs) : tf.tidy(() => f(inputs, unsaved).value));
}

/** What tf.customGrad's save does with no gradient being recorded: nothing. */
const unsaved: tf.GradSaveFunc = () => {};
