// The prepared dataset folder (little-endian flat arrays, as nanoGPT's train.bin, plus a JSON header):
//   header.json           what it was prepared from (key, file stamps) and each part's counts and pass stats
//   <part>.tokens         int32 per token, examples back to back: the id when the token is trained, -(id + 1) when masked
//   <part>.index          uint32 pairs per example: its token count, the byte length of its `where`
//   <part>.where          UTF-8 `where` names (`data/train.jsonl row 17`) back to back
//   <part>.hashes         float64 per record (those that made no example too): its rowHash (53 bits, exact in a double)
// for <part> = train and validation, both in file order. header.json is written last and the folder renamed into
// place whole, so a folder with a header is complete.
import * as path from 'node:path';
import type { DataStats, Part } from './pipeline.ts';
import type { FileStamp, PreparedKey } from './prepared-key.ts';

export const PARTS: readonly Part[] = ['train', 'validation'];
export const HEADER = 'header.json';
export const FORMAT = 'ft-prepared-data';

export interface PartHeader {
  /** records of the part, whether or not they made an example */
  records: number;
  examples: number;
  tokens: number;
  whereBytes: number;
  /** the stats a streaming pass over the part fills in (notes in file order; workerRows 0) */
  stats: DataStats;
}

export interface PreparedHeader {
  format: typeof FORMAT;
  key: PreparedKey;
  files: FileStamp[];
  parts: Record<Part, PartHeader>;
}

export type PartFile = 'tokens' | 'index' | 'where' | 'hashes';

export const partFile = (dir: string, part: Part, file: PartFile) => path.join(dir, `${part}.${file}`);

/** The byte size each part file must have. */
export function expectedSize(h: PartHeader, file: PartFile): number {
  return { tokens: 4 * h.tokens, index: 8 * h.examples, where: h.whereBytes, hashes: 8 * h.records }[file];
}

/** A stored token: the id, negated (minus one) when its label is masked. */
export const encodeToken = (id: number, label: number) => (label < 0 ? -id - 1 : id);
export const tokenId = (v: number) => (v < 0 ? -v - 1 : v);
