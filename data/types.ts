// The data pipeline's types: rows as read from files, records after column mapping, tokenized examples.
import type { TokenizerOrigin } from '../model/tokenizer.ts';

/** One row as a reader yields it: column name -> value (strings, nulls, nested lists/objects for chat). */
export type Row = Record<string, unknown>;

/** A batch of consecutive rows from one file; `offset` is the index of rows[0] within that file (for error messages). */
export interface RowBatch {
  file: string;
  /** rows of the file before this batch */
  offset: number;
  rows: Row[];
  /** JSON / JSONL: the line each row starts on, counted from 1 (Arrow and Parquet rows are named by row number) */
  lines?: number[];
}

/** How errors and reports name row i of a batch: `line 12` (JSON, JSONL) or `row 3` (Arrow, Parquet), counted from 1. */
export function rowName(batch: RowBatch, i: number): string {
  return batch.lines ? `line ${batch.lines[i]}` : `row ${batch.offset + i + 1}`;
}

/** An Alpaca-style record: `input` is '' when the row has none. */
export interface InstructionRecord {
  kind: 'instruction';
  instruction: string;
  input: string;
  output: string;
}

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** A conversation (`messages` with role/content, or ShareGPT `conversations` with from/value, normalized). */
export interface ChatRecord {
  kind: 'chat';
  messages: ChatMessage[];
}

export type DataRecord = InstructionRecord | ChatRecord;

/** A record with where it came from, e.g. `data/train.jsonl row 17` (0-based row index). */
export interface SourcedRecord {
  record: DataRecord;
  where: string;
}

/**
 * What the data pipeline needs from a tokenizer: a structural subset of model/tokenizer.ts's `Tokenizer`.
 * `encode` without special tokens must return only the text's own tokens (special-token strings in the
 * text, e.g. `<|eot_id|>` rendered by a chat template, map to their ids).
 */
export interface DataTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[]): string;
  bosId: number | null;
  eosId: number;
  padId: number;
  /** prepend bos to every sequence (Llama: true) */
  addBos: boolean;
  /** jinja chat template from tokenizer_config.json, null when the model has none */
  chatTemplate: string | null;
  /** how to build this tokenizer again on a worker thread; without it, tokenizing stays on the calling thread */
  origin?: TokenizerOrigin;
}

/**
 * A tokenized training example. `labels` is aligned with `ids` (Hugging Face convention, NOT shifted):
 * labels[i] = ids[i] when token i is a target of the loss, else IGNORE_INDEX (-100). batches() shifts.
 */
export interface Example {
  ids: Int32Array; // [L]
  labels: Int32Array; // [L]
}

/** Why a record produced no example; counted and reported instead of training on a wrong example. */
export type SkipReason = 'too_long' | 'no_trainable_tokens' | 'bad_row';

export type BuildResult =
  | { ok: true; example: Example; truncated: boolean }
  | { ok: false; reason: SkipReason; detail: string };
