// Held-out loss and perplexity over response tokens: the same forward pass and masking as training.
import * as tf from '@tensorflow/tfjs';
import { causalLmLoss, forward } from '../model/llama.ts';
import type { LlamaWeights, TrainBatch } from '../model/types.ts';

export interface LossResult {
  /** mean cross-entropy per scored token (nats) */
  loss: number;
  /** exp(loss) */
  perplexity: number;
  /** tokens scored (labels != -100) */
  tokens: number;
}

/** Token-weighted mean loss over batches: sum(loss_b · count_b) / sum(count_b), so batch size does not bias it. */
export async function meanLoss(w: LlamaWeights, batches: AsyncIterable<TrainBatch>): Promise<LossResult> {
  let sum = 0;
  let tokens = 0;
  for await (const batch of batches) {
    const value = tf.tidy(() => {
      const { loss, count } = causalLmLoss(forward(w, batch), batch.labels);
      tokens += count;
      return tf.mul(loss, count);
    });
    sum += (await value.data())[0];
    value.dispose();
  }
  const loss = tokens > 0 ? sum / tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokens };
}
