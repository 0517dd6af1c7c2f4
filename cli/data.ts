// `ft data convert IN OUT`, `ft data inspect PATH --model DIR` and `ft data synth --out DIR`.
import type { Argv, CommandModule } from 'yargs';
import { readConfig } from '../model/config.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { writeSynthDataset } from '../data/synth-write.ts';
import { SYNTH_TASKS } from '../data/synth.ts';
import { convertToArrow, inspectDataset, type Inspection } from '../data/inspect.ts';
import { formatStats } from '../data/pipeline.ts';
import { DataRecipeSchema } from '../data/spec.ts';
import { FtError } from '../util/errors.ts';
import { setQuiet } from '../util/progress.ts';
import { requireModelDir, type GlobalArgs } from './common.ts';

interface ConvertArgs extends GlobalArgs {
  input: string;
  output: string;
}

interface InspectArgs extends GlobalArgs {
  path: string;
  model: string;
  type: string;
  'field-instruction': string;
  'field-input': string;
  'field-output': string;
  'field-messages'?: string;
  format?: string;
  'no-input-format'?: string;
  'sequence-len'?: number;
  'train-on-inputs': boolean;
  examples: number;
}

const convert: CommandModule<GlobalArgs, ConvertArgs> = {
  command: 'convert <input> <output>',
  describe: 'convert JSON / JSONL / Parquet (a file, glob or folder) to one Arrow IPC stream file, as datasets writes',
  builder: (y) =>
    y
      .positional('input', { type: 'string', demandOption: true, describe: 'data file, glob of shards, or folder' })
      .positional('output', {
        type: 'string',
        demandOption: true,
        describe: 'the .arrow file to write (atomically)',
      }) as Argv<ConvertArgs>,
  handler: async (argv) => {
    setQuiet(argv.quiet);
    const { files, rows } = await convertToArrow(argv.input, argv.output);
    process.stdout.write(
      `wrote ${argv.output}: ${rows} rows from ${files.length} file${files.length === 1 ? '' : 's'}\n`,
    );
  },
};

/** The inspection as text: schema, rows, examples with masked/trained runs, the length histogram. */
export function formatInspection(r: Inspection, sequenceLen: number): string {
  const out: string[] = [];
  for (const f of r.files) {
    out.push(`${f.file}: ${f.format}, ${f.rows} rows`);
    for (const c of f.columns) out.push(`  ${c.name}: ${c.type}`);
  }
  for (const e of r.examples) {
    out.push('', `=== ${e.where}: ${e.tokens} tokens, ${e.trained} trained ===`);
    for (const run of e.runs)
      out.push(`--- ${run.trained ? 'trained' : 'masked'} (${run.tokens} tokens) ---`, run.text);
  }
  const h = r.lengths;
  out.push(
    '',
    `token lengths: min ${h.min}, mean ${h.mean.toFixed(1)}, max ${h.max}; ${h.overSequenceLen} longer than sequence_len ${sequenceLen}`,
  );
  const top = Math.max(...h.counts);
  const first = h.counts.findIndex((c) => c > 0);
  h.counts.forEach((c, i) => {
    if (i < first) return;
    const range = `${h.edges[i]}-${(h.edges[i + 1] ?? 2 * h.edges[i]) - 1}`;
    out.push(`  ${range.padStart(11)} ${String(c).padStart(8)} ${'#'.repeat(Math.round((40 * c) / top))}`);
  });
  out.push(formatStats(r.stats, sequenceLen));
  return out.join('\n') + '\n';
}

const inspect: CommandModule<GlobalArgs, InspectArgs> = {
  command: 'inspect <path>',
  describe:
    'print schema, row count, a few examples as tokenized and masked for training, and a token-length histogram',
  builder: (y) =>
    y
      .positional('path', { type: 'string', demandOption: true, describe: 'data file, glob of shards, or folder' })
      .option('model', {
        type: 'string',
        demandOption: true,
        describe: 'model folder whose tokenizer (and chat template) to use',
      })
      .option('type', {
        type: 'string',
        default: 'alpaca',
        describe: 'prompt template: alpaca, chatml, custom or chat',
      })
      .option('field-instruction', { type: 'string', default: 'instruction' })
      .option('field-input', { type: 'string', default: 'input' })
      .option('field-output', { type: 'string', default: 'output' })
      .option('field-messages', {
        type: 'string',
        describe: 'chat column (default messages, or ShareGPT conversations)',
      })
      .option('format', { type: 'string', describe: 'custom template with {instruction} {input} [{output}]' })
      .option('no-input-format', { type: 'string', describe: 'custom template for rows without input' })
      .option('sequence-len', {
        type: 'number',
        describe: "tokens per example (default: the model's max_position_embeddings)",
      })
      .option('train-on-inputs', { type: 'boolean', default: false })
      .option('examples', { type: 'number', default: 3, describe: 'how many examples to print' }) as Argv<InspectArgs>,
  handler: async (argv) => {
    setQuiet(argv.quiet);
    requireModelDir(argv.model);
    const sequenceLen = argv['sequence-len'] ?? (await readConfig(argv.model)).maxPositionEmbeddings;
    const parsed = DataRecipeSchema.safeParse({
      datasets: [
        {
          path: argv.path,
          type: argv.type,
          field_instruction: argv['field-instruction'],
          field_input: argv['field-input'],
          field_output: argv['field-output'],
          field_messages: argv['field-messages'],
          format: argv.format,
          no_input_format: argv['no-input-format'],
        },
      ],
      sequence_len: sequenceLen,
      train_on_inputs: argv['train-on-inputs'],
    });
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      throw new FtError(`--${String(i.path.at(-1)).replace(/_/g, '-')}: ${i.message}`);
    }
    const tok = await loadTokenizer(argv.model);
    const report = await inspectDataset(parsed.data, tok, '.', argv.examples);
    process.stdout.write(formatInspection(report, sequenceLen));
  },
};

interface SynthArgs extends GlobalArgs {
  out: string;
  rows: number;
  'held-out': number;
  seed: number;
}

const synth: CommandModule<GlobalArgs, SynthArgs> = {
  command: 'synth',
  describe: `write ft's generated instruction tasks (${SYNTH_TASKS.map((t) => t.name).join(', ')}) as a datasets save_to_disk folder with train and test splits`,
  builder: (y) =>
    y
      .option('out', { type: 'string', demandOption: true, describe: 'output folder (replaced atomically)' })
      .option('rows', { type: 'number', default: 3000, describe: 'training rows' })
      .option('held-out', { type: 'number', default: 200, describe: 'test rows, with inputs no training row has' })
      .option('seed', {
        type: 'number',
        default: 0,
        describe: 'generator seed (same seed, same rows)',
      }) as Argv<SynthArgs>,
  handler: async (argv) => {
    const count = (flag: string, v: number, min: number) => {
      if (!Number.isInteger(v) || v < min) throw new FtError(`--${flag} must be an integer >= ${min}, got ${v}`);
      return v;
    };
    const opts = {
      rows: count('rows', argv.rows, 1),
      heldOut: count('held-out', argv['held-out'], 0),
      seed: count('seed', argv.seed, 0),
    };
    const n = await writeSynthDataset(argv.out, opts);
    process.stdout.write(
      `wrote ${argv.out}: train ${n.train} rows, test ${n.test} rows (Arrow IPC stream, datasets save_to_disk layout)\n`,
    );
  },
};

export const dataCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'data <command>',
  describe: 'convert, inspect and generate datasets',
  builder: (y) =>
    y
      .command(convert as never)
      .command(inspect as never)
      .command(synth as never)
      .demandCommand(1) as Argv<GlobalArgs>,
  handler: () => {},
};
