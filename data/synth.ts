// ft's own instruction data: deterministic Alpaca-style rows of small tasks a tiny model can learn from a few thousand
// examples (reverse the words, sort numbers, convert a date, count capitals, count words, list to JSON), with a
// held-out split whose inputs never occur in the training split.
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { renderInstruction, TEMPLATES } from './templates.ts';

/** One generated row: the Alpaca columns plus the task it belongs to (the eval reports per task). */
export interface SynthRow {
  task: string;
  instruction: string;
  input: string;
  output: string;
}

interface SynthTask {
  name: string;
  instruction: string;
  /** a random input and its answer */
  make(rng: Rng): { input: string; output: string };
}

/** Short words, each one BPE token once the tokenizer has seen the synth rows. */
const WORDS = [
  'cat',
  'dog',
  'sun',
  'tree',
  'red',
  'blue',
  'fish',
  'bird',
  'book',
  'milk',
  'rain',
  'star',
  'moon',
  'king',
  'frog',
  'cake',
];

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)];
const words = (rng: Rng, n: number) => Array.from({ length: n }, () => pick(rng, WORDS));
const capitalized = (w: string) => w[0].toUpperCase() + w.slice(1);
const pad2 = (n: number) => String(n).padStart(2, '0');

/** Distinct integers below `max`, in random order. */
function distinct(rng: Rng, n: number, max: number): number[] {
  const out = new Set<number>();
  while (out.size < n) out.add(rng.int(max));
  return [...out];
}

export const SYNTH_TASKS: readonly SynthTask[] = [
  {
    name: 'reverse_words',
    instruction: 'Reverse the order of the words.',
    make(rng) {
      const ws = words(rng, 3);
      return { input: ws.join(' '), output: [...ws].reverse().join(' ') };
    },
  },
  {
    name: 'sort_numbers',
    instruction: 'Sort the numbers from smallest to largest.',
    make(rng) {
      const ns = distinct(rng, 3, 100);
      return { input: ns.join(', '), output: [...ns].sort((a, b) => a - b).join(', ') };
    },
  },
  {
    name: 'date_format',
    instruction: 'Rewrite the date from YYYY-MM-DD as DD/MM/YYYY.',
    make(rng) {
      const [y, m, d] = [1990 + rng.int(40), 1 + rng.int(12), 1 + rng.int(28)];
      return { input: `${y}-${pad2(m)}-${pad2(d)}`, output: `${pad2(d)}/${pad2(m)}/${y}` };
    },
  },
  {
    name: 'count_capitals',
    instruction: 'How many capital letters are in the text?',
    make(rng) {
      let count = 0;
      const ws = words(rng, 3 + rng.int(3)).map((w) => (rng.next() < 0.5 ? (count++, capitalized(w)) : w));
      return { input: ws.join(' '), output: String(count) };
    },
  },
  {
    name: 'count_words',
    instruction: 'How many words are in the text?',
    make(rng) {
      const n = 2 + rng.int(6);
      return { input: words(rng, n).join(' '), output: String(n) };
    },
  },
  {
    name: 'list_to_json',
    instruction: 'Write the list as a JSON array.',
    make(rng) {
      const ws = words(rng, 3);
      return { input: ws.join(', '), output: JSON.stringify(ws).replaceAll(',', ', ') };
    },
  },
];

export interface SynthOptions {
  /** training rows */
  rows: number;
  /** held-out rows, with inputs that no training row of the same task has */
  heldOut: number;
  seed: number;
}

export interface SynthSplits {
  train: SynthRow[];
  test: SynthRow[];
}

/**
 * Rows cycling through the tasks; an input its task already has in `taken` is drawn again (a task whose inputs run out
 * is skipped), each new one is added. Ends when every task has run out.
 */
function* rowsOf(rng: Rng, taken: Set<string>): Generator<SynthRow> {
  const MAX_TRIES = 1000;
  for (let i = 0, idle = 0; idle < SYNTH_TASKS.length; i++) {
    const task = SYNTH_TASKS[i % SYNTH_TASKS.length];
    let row: SynthRow | null = null;
    for (let tries = 0; tries < MAX_TRIES && !row; tries++) {
      const { input, output } = task.make(rng);
      const key = `${task.name}\0${input}`;
      if (taken.has(key)) continue;
      taken.add(key);
      row = { task: task.name, instruction: task.instruction, input, output };
    }
    idle = row ? 0 : idle + 1;
    if (row) yield row;
  }
}

/**
 * The held-out rows first, then the training rows, from one seeded generator: the same options give the same rows.
 * Training rows never repeat a held-out (task, input), so the held-out split measures unseen inputs.
 */
export function synthSplits(opts: SynthOptions): SynthSplits {
  const rng = new Rng(opts.seed);
  const taken = new Set<string>();
  const take = (n: number) => {
    const out: SynthRow[] = [];
    for (const r of rowsOf(rng, taken)) {
      if (out.length === n) break;
      out.push(r);
    }
    if (out.length < n)
      throw new FtError(
        `synth: only ${out.length} distinct rows left of the ${n} asked for (the tasks' inputs ran out)`,
      );
    return out;
  };
  const test = take(opts.heldOut);
  return { test, train: take(opts.rows) };
}

/**
 * The text a tokenizer for the synth tasks should learn from: held-out-free training rows rendered with both Alpaca
 * templates (prompt and response), so the template's words and the tasks' words and digits become tokens.
 */
export function synthCorpus(rows = 2000, seed = 0): string[] {
  const { train } = synthSplits({ rows, heldOut: 0, seed });
  return train.flatMap((r) => {
    const withInput = renderInstruction({ kind: 'instruction', ...r }, TEMPLATES.alpaca);
    const noInput = renderInstruction({ kind: 'instruction', ...r, input: '' }, TEMPLATES.alpaca);
    return [withInput.prompt + withInput.response, noInput.prompt];
  });
}
