// Recipe errors a person can act on: `file:line: key: expected ..., got value`, or `--key: ...` when the value came
// from the command line, with "did you mean" for unknown keys.
import { isMap, isScalar, type Document, type LineCounter } from 'yaml';
import type { z } from 'zod';
import { knownKeys, type Key } from './schema.ts';

export interface Source {
  file: string;
  doc: Document;
  lines: LineCounter;
  overridden: Set<string>;
}

/** "expected ..." for fields that set no message of their own (zod's defaults read "Invalid input: ..."). */
export function plainMessage(iss: z.core.$ZodRawIssue): string | undefined {
  const a = (n: string) =>
    ({
      int: 'an integer',
      number: 'a number',
      string: 'a string',
      boolean: 'true or false',
      array: 'a list',
      object: 'a mapping',
    })[n] ?? n;
  switch (iss.code) {
    case 'invalid_type':
      return `expected ${a(String(iss.expected))}`;
    case 'too_small':
    case 'too_big': {
      const bound = iss.code === 'too_small' ? iss.minimum : iss.maximum;
      const op = iss.code === 'too_small' ? (iss.inclusive ? '>=' : '>') : iss.inclusive ? '<=' : '<';
      if (iss.origin === 'array')
        return `expected ${iss.code === 'too_small' ? 'at least' : 'at most'} ${bound} item(s)`;
      if (iss.origin === 'string')
        return iss.code === 'too_small' ? 'expected a non-empty string' : `expected at most ${bound} characters`;
      return `expected a number ${op} ${bound}`;
    }
    case 'invalid_value':
      return `expected one of ${iss.values.map(String).join(', ')}`;
    default:
      return undefined;
  }
}

/** `file:line: key: message, got value`, or `--key: ...` when the value came from the command line. */
export function describeIssue(issue: z.core.$ZodIssue, raw: unknown, src: Source): string {
  const keys = issue.path as Key[];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    const where = locate(src, [...keys, key], true);
    const name = keys.length ? `${keys.join('.')}.${key}` : key;
    return `${where}: unknown key '${name}'${didYouMean(key, knownKeys(keys))}`;
  }
  const value = valueAt(raw, keys);
  const name = keys.join('.');
  // a field's own check shows the value it got; a rule about several fields, or a missing one, speaks for itself
  const crossField = issue.code === 'custom' && issue.params?.crossField === true;
  const got = crossField
    ? ''
    : value !== undefined
      ? `, got ${show(value)}`
      : issue.code === 'custom'
        ? ''
        : ' (missing)';
  const where = locate(src, keys, false);
  return where === `--${name}` ? `${where}: ${issue.message}${got}` : `${where}: ${name}: ${issue.message}${got}`;
}

/** `--key` when set on the command line, else `file:line` of the key (or its nearest present parent), else `file`. */
export function locate(src: Source, keys: Key[], keyNode: boolean): string {
  for (let n = keys.length; n > 0; n--) {
    if (src.overridden.has(keys.slice(0, n).join('.'))) return `--${keys.slice(0, n).join('.')}`;
  }
  for (let n = keys.length; n > 0; n--) {
    const offset = nodeOffset(src.doc, keys.slice(0, n), keyNode && n === keys.length);
    if (offset !== null) return `${src.file}:${src.lines.linePos(offset).line}`;
  }
  return src.file;
}

/** Source offset of the value at `keys` (or of its key, for unknown keys). */
function nodeOffset(doc: Document, keys: Key[], ofKey: boolean): number | null {
  const parent = keys.length === 1 ? doc.contents : doc.getIn(keys.slice(0, -1), true);
  const last = keys[keys.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === last);
    const node = pair && (ofKey || !pair.value ? pair.key : pair.value);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    return range ? range[0] : null;
  }
  const node = doc.getIn(keys, true) as { range?: [number, number, number] } | undefined;
  return node?.range ? node.range[0] : null;
}

function valueAt(raw: unknown, keys: Key[]): unknown {
  let v = raw;
  for (const k of keys) v = v !== null && typeof v === 'object' ? (v as Record<Key, unknown>)[k] : undefined;
  return v;
}

function show(v: unknown): string {
  if (typeof v === 'number' && !Number.isFinite(v))
    return Number.isNaN(v) ? '.nan (not a number)' : `${v < 0 ? '-' : ''}.inf (infinite)`;
  if (Array.isArray(v)) return `a list [${v.map(show).join(', ')}]`;
  if (v !== null && typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

export function didYouMean(key: string, candidates: string[]): string {
  let best = '';
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(key, c);
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best && bestDist <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean '${best}'?)` : '';
}

// Levenshtein distance for "did you mean": a dozen lines, not worth a dependency.
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
