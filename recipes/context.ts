// The recipe's sequence_len against the model's context (config.json max_position_embeddings), checked before the
// data pass: a sequence_len far past it would allocate batches and RoPE tables of that length and fail much later.
import * as path from 'node:path';
import type { LlamaConfig } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import type { Recipe } from './schema.ts';

/** Refuses a sequence_len longer than the model's max_position_embeddings unless allow_longer_sequence_len is set. */
export function checkSequenceLen(recipe: Recipe, config: LlamaConfig, modelDir: string): void {
  if (recipe.sequence_len <= config.maxPositionEmbeddings || recipe.allow_longer_sequence_len) return;
  throw new FtError(
    `sequence_len ${recipe.sequence_len} is longer than the model's context: ${path.join(modelDir, 'config.json')} has max_position_embeddings ` +
      `${config.maxPositionEmbeddings} (set allow_longer_sequence_len: true to train past it)`,
  );
}
