// JSON Lines and JSON-array readers that stream: one row object at a time, never the whole file in memory.
import { FtError } from '../util/errors.ts';
import type { Row, RowBatch } from './types.ts';
import { unreadableRow, type UnreadableRows } from './unreadable-row.ts';
import { describeFault, Utf8Text, type Utf8Fault } from './utf8-text.ts';

const BATCH_ROWS = 1024;

/** The text of a file after its first non-blank character, and what each reader needs to place faults and lines. */
interface JsonText {
  file: string;
  /** the file's text from its first non-blank character */
  first: string;
  /** index of first[0] in the whole text */
  start: number;
  /** newlines before first[0] */
  lines: number;
  rest: AsyncGenerator<string>;
  utf8: Utf8Text;
  unreadable: UnreadableRows;
}

/** The row in place of one with a byte that is not UTF-8 (a reader claims faults up to each row's end first). */
function unreadable(t: JsonText, fault: Utf8Fault, where: string): Row {
  if (t.unreadable === 'error') throw new FtError(`${t.file} ${where}: ${describeFault(fault)}`);
  return unreadableRow(describeFault(fault)); // the pipeline names the row by its line
}

function parseRow(text: string, file: string, where: string): Row {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FtError(`${file} ${where}: invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new FtError(
      `${file} ${where}: expected a JSON object per row, got ${Array.isArray(v) ? 'an array' : typeof v}`,
    );
  return v as Row;
}

/** JSON Lines: one object per line; blank lines are ignored. */
async function* readJsonl(t: JsonText): AsyncGenerator<RowBatch> {
  const { file, rest } = t;
  let carry = t.first;
  let base = t.start; // text index of carry[0]
  let line = t.lines;
  let offset = 0;
  let rows: Row[] = [];
  let lines: number[] = []; // the file line of each row, from 1
  const take = (text: string, end: number) => {
    line++;
    const fault = t.utf8.claim(end);
    if (!fault && text.trim() === '') return;
    rows.push(fault ? unreadable(t, fault, `line ${line}`) : parseRow(text, file, `line ${line}`));
    lines.push(line);
  };
  for (;;) {
    let nl: number;
    let start = 0;
    while ((nl = carry.indexOf('\n', start)) >= 0) {
      take(carry.slice(start, nl), base + nl);
      start = nl + 1;
    }
    carry = carry.slice(start);
    base += start;
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
  if (carry.trim() !== '') take(carry, Infinity);
  if (rows.length) yield { file, offset, rows, lines };
}

/**
 * A top-level JSON array of objects (Stanford Alpaca's alpaca_data.json), scanned element by element.
 * Hand-written because no maintained streaming JSON parser is a dependency; JSON.parse does each element.
 */
async function* readJsonArray(t: JsonText): AsyncGenerator<RowBatch> {
  const { file, rest } = t;
  let buf = t.first.slice(1);
  let base = t.start + 1; // text index of buf[0]
  let pos = 0; // scan position in buf
  let depth = 0; // nesting inside the current element
  let elemStart = -1;
  let inString = false;
  let escaped = false;
  let closed = false;
  let offset = 0;
  let rows: Row[] = [];
  let lines: number[] = []; // the file line each row starts on, from 1
  let line = t.lines + 1; // line of the scan position (JSON strings hold no raw newline)
  let elemLine = 0;
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
          const fault = t.utf8.claim(base + pos + 1);
          const where = `line ${elemLine}`;
          rows.push(fault ? unreadable(t, fault, where) : parseRow(buf.slice(elemStart, pos + 1), file, where));
          lines.push(elemLine);
          elemStart = -1;
        }
      } else if (depth === 0 && c !== 44 /* , */ && c !== 32 && c !== 10 && c !== 13 && c !== 9) {
        const fault = t.utf8.claim(base + pos + 1);
        throw bad(fault ? `${describeFault(fault)} between rows` : `unexpected '${buf[pos]}' between rows`);
      }
    }
    // keep only the unfinished element
    const keep = elemStart >= 0 ? elemStart : pos;
    buf = buf.slice(keep);
    base += keep;
    pos -= keep;
    if (elemStart >= 0) elemStart = 0;
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

/**
 * Rows of a .json/.jsonl file: a JSON array of objects, or one object per line (also what `datasets` to_json writes).
 * A row holding bytes that are not UTF-8 stops the read (`unreadable: 'error'`) or comes as an unreadableRow.
 */
export async function* readJsonRows(file: string, unreadable: UnreadableRows = 'error'): AsyncGenerator<RowBatch> {
  const utf8 = new Utf8Text(file);
  const chunks = utf8.chunks();
  let text = '';
  let read = 0;
  // find the first non-blank character to tell an array from JSON Lines
  for (;;) {
    const first = text.trimStart();
    if (first !== '') {
      const blank = text.slice(0, text.length - first.length);
      const t: JsonText = {
        file,
        first,
        start: read - first.length,
        lines: blank.split('\n').length - 1,
        rest: chunks,
        utf8,
        unreadable,
      };
      if (first[0] === '[') yield* readJsonArray(t);
      else if (first[0] === '{') yield* readJsonl(t);
      else {
        const fault = utf8.claim(t.start + 1);
        throw new FtError(
          `${file}: expected a JSON array of objects or JSON Lines (one object per line), found ${fault ? describeFault(fault) : `'${first[0]}'`}`,
        );
      }
      return;
    }
    const next = await chunks.next();
    if (next.done) return; // empty file: no rows
    text += next.value;
    read += next.value.length;
  }
}
