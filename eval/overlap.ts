// Held-out discipline: eval rows must not be training rows. Rows are compared by content hash (data/split.ts rowHash).
import { prepareDataset } from '../data/prepared.ts';
import type { DataTokenizer } from '../data/types.ts';
import type { DataRecipe } from '../data/spec.ts';
import { FtError } from '../util/errors.ts';

/**
 * Hashes of every record in the training part of a recipe's datasets (validation rows excluded); from the prepared
 * data in `preparedDir` when it is up to date, else streamed.
 */
export async function trainingHashes(
  recipe: DataRecipe,
  tok: DataTokenizer,
  baseDir: string,
  preparedDir: string,
): Promise<Set<string>> {
  const ds = await prepareDataset(recipe, tok, baseDir, { dir: preparedDir, build: false });
  const hashes = new Set<string>();
  for await (const h of ds.hashes('train')) hashes.add(h);
  return hashes;
}

export interface OverlapResult {
  /** eval items whose record is also a training record */
  overlapping: { index: number; where: string }[];
  message: string | null;
}

/**
 * Compares eval items with training hashes. On overlap: throws an FtError naming the count and one example,
 * or, with `allow`, returns the message for the caller to print as a warning.
 */
export function checkOverlap(
  items: { index: number; where: string; hash: string }[],
  train: Set<string>,
  opts: { allow: boolean; trainedOn: string },
): OverlapResult {
  const overlapping = items.filter((i) => train.has(i.hash)).map(({ index, where }) => ({ index, where }));
  if (overlapping.length === 0) return { overlapping, message: null };
  const message = `${overlapping.length} of ${items.length} eval rows also appear in the training rows of ${opts.trainedOn} (e.g. ${overlapping[0].where}): scores on them are not held-out`;
  if (!opts.allow) throw new FtError(`${message}; remove them or pass --allow-overlap to evaluate anyway`);
  return { overlapping, message };
}
