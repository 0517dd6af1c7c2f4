// What a prepared dataset depends on: the recipe's data keys that change examples, the tokenizer's content and the
// data files (path, size, modification time). The folder is named by the first two; the files are checked on open.
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { entryFiles } from './source.ts';
import type { DataRecipe } from './spec.ts';
import type { DataTokenizer } from './types.ts';

/** Bumped whenever the prepared layout or what goes into an example changes: older folders are then rebuilt. */
export const PREPARED_VERSION = 1;

/** Everything besides the files' contents that decides a prepared dataset's examples, split and `where` names. */
export interface PreparedKey {
  version: number;
  /** dataset entries as the recipe gives them (type, field mapping, templates), paths resolved */
  datasets: DataRecipe['datasets'];
  /** relative `where` names are relative to it */
  baseDir: string;
  sequence_len: number;
  train_on_inputs: boolean;
  excess_length_strategy: DataRecipe['excess_length_strategy'];
  val_set_size: number;
  /** the split's seed */
  seed: number;
  on_bad_row: DataRecipe['on_bad_row'];
  /** sha256 of tokenizer.json, tokenizer_config.json, config.json (as parsed), the chat template and special ids */
  tokenizer: string;
}

/** A data file as it was when the dataset was prepared. */
export interface FileStamp {
  file: string;
  size: number;
  mtimeMs: number;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The tokenizer's identity, or null when it cannot say what it was built from (then nothing is prepared). */
export function tokenizerHash(tok: DataTokenizer): string | null {
  if (!tok.origin) return null;
  const { tokenizerJson, tokenizerConfig, modelConfig } = tok.origin;
  return sha256(
    JSON.stringify([
      tokenizerJson,
      tokenizerConfig,
      modelConfig,
      tok.chatTemplate,
      tok.bosId,
      tok.eosId,
      tok.padId,
      tok.addBos,
    ]),
  );
}

export function preparedKey(recipe: DataRecipe, tokenizer: string, baseDir: string): PreparedKey {
  const base = path.resolve(baseDir);
  return {
    version: PREPARED_VERSION,
    datasets: recipe.datasets.map((d) => ({ ...d, path: path.resolve(base, d.path) })),
    baseDir: base,
    sequence_len: recipe.sequence_len,
    train_on_inputs: recipe.train_on_inputs,
    excess_length_strategy: recipe.excess_length_strategy,
    val_set_size: recipe.val_set_size,
    seed: recipe.seed,
    on_bad_row: recipe.on_bad_row,
    tokenizer,
  };
}

/** The folder name of a key inside dataset_prepared_path (axolotl names its prepared folders by a hash too). */
export function keyName(key: PreparedKey): string {
  return sha256(JSON.stringify(key)).slice(0, 16);
}

/** The current stamps of every data file behind the recipe's datasets, in the pipeline's order. */
export async function fileStamps(recipe: DataRecipe, baseDir: string): Promise<FileStamp[]> {
  const stamps: FileStamp[] = [];
  for (const d of recipe.datasets) {
    for (const file of await entryFiles(d, baseDir)) {
      const st = await fsp.stat(file);
      stamps.push({ file, size: st.size, mtimeMs: st.mtimeMs });
    }
  }
  return stamps;
}

/** Why files prepared as `before` no longer match `now` (null when they do). */
export function filesChanged(before: FileStamp[], now: FileStamp[]): string | null {
  for (const f of now) {
    const old = before.find((b) => b.file === f.file);
    if (!old) return `${f.file} is new`;
    if (old.size !== f.size || old.mtimeMs !== f.mtimeMs) return `${f.file} changed (size or modification time)`;
  }
  const gone = before.find((b) => !now.some((f) => f.file === b.file));
  return gone ? `${gone.file} is no longer part of the dataset` : null;
}
