// Recomputation in the backward pass, i.e. activation (gradient) checkpointing (Chen et al. 2016, "Training Deep
// Nets with Sublinear Memory Cost"): an op that keeps only its input through the forward pass and, in the backward pass, runs its function again under a tape of its
// own to differentiate it. tfjs autodiff otherwise holds every intermediate tensor of the whole forward pass until
// the backward pass ends; recomputing each decoder layer bounds that to one layer's worth (plus each layer's input).
import * as tf from '@tensorflow/tfjs';
import { customGrad } from './custom-grad.ts';

/** A random stream the function draws from (dropout), rewound so the recomputation draws the same masks. */
export interface Replay {
  save(): unknown;
  restore(state: unknown): void;
}

/**
 * fn(x), holding nothing of fn's intermediates; differentiable in x and in `params`, the trainable variables fn
 * reads. fn is called with recompute = false in the forward pass and true in the backward pass, where tensors it
 * closes over from the forward pass are gone (it must rebuild them).
 */
export function recompute(
  fn: (x: tf.Tensor2D, recompute: boolean) => tf.Tensor2D,
  x: tf.Tensor2D,
  params: tf.Variable[],
  replay?: Replay,
): tf.Tensor2D {
  const before = replay?.save();
  const op = customGrad<tf.Tensor[], tf.Tensor2D>(([input], save) => {
    save([input]);
    return {
      value: fn(input as tf.Tensor2D, false),
      gradFunc: (dy, [saved]) => {
        const after = replay?.save();
        replay?.restore(before);
        const engine = tf.engine();
        // gradients() called from inside a backward pass starts a fresh tape and clears it when done, which would
        // drop the tape of the backward pass that is running this function: put that one back afterwards
        const outerTape = engine.state.activeTape;
        try {
          const xs = [saved, ...params];
          const { value, grads } = engine.gradients(() => fn(saved as tf.Tensor2D, true), xs, dy, true);
          value.dispose();
          return grads.map((g, i) => g ?? tf.zerosLike(xs[i]));
        } finally {
          engine.state.activeTape = outerTape;
          replay?.restore(after);
        }
      },
    };
  });
  return op(x, ...params);
}
