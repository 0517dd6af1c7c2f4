// JSON Lines and JSON-array readers that stream: one row object at a time, never the whole file in memory.
import { createReadStream } from 'node:fs';
import { FtError } from '../util/errors.ts';
import type { Row, RowBatch } from './types.ts';

const BATCH_ROWS = 1024;

/** Text chunks of a file (utf-8 decoding keeps multi-byte characters whole across chunks). */
async function* textChunks(file: string): AsyncGenerator<string> {
  const stream = createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
  try {
    for await (const chunk of stream) yield chunk as string;
  } catch (e) {
    throw new FtError(`${file}: cannot read (${(e as Error).message})`);
  }
}

function parseRow(text: string, file: string, where: string): Row {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FtError(`${file} ${where}: invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new FtError(`${file} ${where}: expected a JSON object per row, got ${Array.isArray(v) ? 'an array' : typeof v}`);
  return v as Row;
}

/** JSON Lines: one object per line; blank lines are ignored. */
async function* readJsonl(file: string, first: string, firstLine: number, rest: AsyncGenerator<string>): AsyncGenerator<RowBatch> {
  let carry = first;
  let line = firstLine - 1;
  let offset = 0;
  let rows: Row[] = [];
  let lines: number[] = [];
  const take = (text: string) => {
    line++;
    if (text.trim() === '') return;
    rows.push(parseRow(text, file, `line ${line}`));
    lines.push(line);
  };
  for (;;) {
    let nl: number;
    let start = 0;
    while ((nl = carry.indexOf('\n', start)) >= 0) {
      take(carry.slice(start, nl));
      start = nl + 1;
    }
    carry = carry.slice(start);
    if (rows.length >= BATCH_ROWS) {
      yield { file, offset, rows, lines };
      offset += rows.length;
      rows = [];
      lines = [];
    }
    const next = await rest.next();
    if (next.done) break;
    carry += next.value;
  }
  if (carry.trim() !== '') take(carry);
  if (rows.length) yield { file, offset, rows, lines };
}

/**
 * A top-level JSON array of objects (Stanford Alpaca's alpaca_data.json), scanned element by element.
 * Hand-written because no maintained streaming JSON parser is a dependency; JSON.parse does each element.
 */
async function* readJsonArray(file: string, first: string, firstLine: number, rest: AsyncGenerator<string>): AsyncGenerator<RowBatch> {
  let buf = first.slice(first.indexOf('[') + 1);
  let line = firstLine; // line of the scan position (JSON strings hold no raw newline)
  let elemLine = 0;
  let pos = 0; // scan position in buf
  let depth = 0; // nesting inside the current element
  let elemStart = -1;
  let inString = false;
  let escaped = false;
  let closed = false;
  let offset = 0;
  let rows: Row[] = [];
  let lines: number[] = [];
  const bad = (what: string) => new FtError(`${file}: corrupt JSON array at line ${line} (${what})`);
  for (;;) {
    for (; pos < buf.length && !closed; pos++) {
      const c = buf.charCodeAt(pos);
      if (c === 10) line++;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 92 /* \ */) escaped = true;
        else if (c === 34 /* " */) inString = false;
      } else if (c === 34) {
        if (depth === 0) throw bad('expected an object, found a string');
        inString = true;
      } else if (c === 123 /* { */ || c === 91 /* [ */) {
        if (depth === 0) {
          if (c === 91) throw bad('expected an object, found an array');
          elemStart = pos;
          elemLine = line;
        }
        depth++;
      } else if (c === 125 /* } */ || c === 93 /* ] */) {
        if (depth === 0) {
          if (c === 93) closed = true;
          else throw bad("unbalanced '}'");
        } else if (--depth === 0) {
          rows.push(parseRow(buf.slice(elemStart, pos + 1), file, `line ${elemLine}`));
          lines.push(elemLine);
          elemStart = -1;
        }
      } else if (depth === 0 && c !== 44 /* , */ && c !== 32 && c !== 10 && c !== 13 && c !== 9) {
        throw bad(`unexpected '${buf[pos]}' between rows`);
      }
    }
    // keep only the unfinished element
    if (elemStart >= 0) {
      buf = buf.slice(elemStart);
      pos -= elemStart;
      elemStart = 0;
    } else {
      buf = buf.slice(pos);
      pos = 0;
    }
    if (rows.length >= BATCH_ROWS || (closed && rows.length)) {
      yield { file, offset, rows, lines };
      offset += rows.length;
      rows = [];
      lines = [];
    }
    if (closed) break;
    const next = await rest.next();
    if (next.done) throw bad('file ends before the closing ]');
    buf += next.value;
  }
  for (let tail = buf; ; ) {
    if (tail.trim() !== '') throw bad('text after the closing ]');
    const next = await rest.next();
    if (next.done) break;
    tail = next.value;
  }
}

/** Rows of a .json/.jsonl file: a JSON array of objects, or one object per line (also what `datasets` to_json writes). */
export async function* readJsonRows(file: string): AsyncGenerator<RowBatch> {
  const chunks = textChunks(file);
  let first = '';
  let firstLine = 1;
  // find the first non-blank character to tell an array from JSON Lines
  for (;;) {
    const trimmed = first.trimStart();
    if (trimmed !== '') {
      firstLine += (first.slice(0, first.length - trimmed.length).match(/\n/g) ?? []).length;
      first = trimmed;
      break;
    }
    const next = await chunks.next();
    if (next.done) return; // empty file: no rows
    first += next.value;
  }
  if (first[0] === '[') yield* readJsonArray(file, first, firstLine, chunks);
  else if (first[0] === '{') yield* readJsonl(file, first, firstLine, chunks);
  else throw new FtError(`${file}: expected a JSON array of objects or JSON Lines (one object per line), found '${first[0]}'`);
}
