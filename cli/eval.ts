// `ft eval`: base model against one or more adapters on held-out prompts: loss, perplexity, generated answers, metrics, report.
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { entryFor } from '../eval/items.ts';
import { trainingHashes } from '../eval/overlap.ts';
import { metricNames } from '../eval/report.ts';
import { runEval } from '../eval/run.ts';
import type { EvalResult, GenerationSettings } from '../eval/types.ts';
import { denseLinear } from '../model/linear.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { preparedPathOf } from '../data/prepared.ts';
import { resolveHubDatasets } from '../hub/dataset.ts';
import { loadRecipe } from '../recipes/recipe.ts';
import { FtError } from '../util/errors.ts';
import { requireModelDir, startRun, type GlobalArgs } from './common.ts';

/** The command's flags; the generation ones (--max-new-tokens ... --batch-size) as eval/types.ts names them. */
export interface EvalArgs extends GlobalArgs, GenerationSettings {
  model: string;
  adapter: string[];
  data: string;
  dataType: string;
  out?: string;
  base: boolean;
  maxSamples?: number;
  sequenceLen?: number;
  recipe?: string;
  allowOverlap: boolean;
  metric?: string;
  loadIn4bit: boolean;
  reportExamples: number;
}

function checkArgs(a: EvalArgs): void {
  const posInt = (v: number | undefined, flag: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1))
      throw new FtError(`${flag} must be a positive integer, got ${v}`);
  };
  posInt(a.maxNewTokens, '--max-new-tokens');
  posInt(a.batchSize, '--batch-size');
  posInt(a.maxSamples, '--max-samples');
  posInt(a.sequenceLen, '--sequence-len');
  if (!(a.temperature >= 0)) throw new FtError(`--temperature must be >= 0 (0 = greedy), got ${a.temperature}`);
  if (!Number.isInteger(a.topK) || a.topK < 0)
    throw new FtError(`--top-k must be an integer >= 0 (0 = off), got ${a.topK}`);
  if (!(a.topP > 0 && a.topP <= 1)) throw new FtError(`--top-p must be in (0, 1], got ${a.topP}`);
  if (!Number.isInteger(a.reportExamples) || a.reportExamples < 0)
    throw new FtError(`--report-examples must be an integer >= 0, got ${a.reportExamples}`);
  if (!a.base && a.adapter.length === 0)
    throw new FtError('--no-base needs at least one --adapter (nothing to evaluate)');
}

/** Runs `ft eval` from parsed arguments; returns what it wrote. */
export async function runEvalCommand(a: EvalArgs, log: (line: string) => void = () => {}): Promise<EvalResult> {
  checkArgs(a);
  requireModelDir(a.model);
  let overlap;
  if (a.recipe) {
    const recipe = loadRecipe(a.recipe);
    const tok = await loadTokenizer(a.model);
    const datasets = await resolveHubDatasets(recipe.datasets, { log }); // Hub datasets from the cache (or the Hub)
    const hashes = await trainingHashes(
      { ...recipe, datasets },
      tok,
      path.dirname(path.resolve(a.recipe)),
      preparedPathOf(recipe),
    );
    overlap = { hashes, trainedOn: a.recipe, allow: a.allowOverlap };
  }
  const out = a.out ?? (a.adapter.length > 0 ? path.join(path.dirname(path.resolve(a.adapter[0])), 'eval') : 'eval');
  return runEval({
    model: a.model,
    adapters: a.adapter,
    includeBase: a.base,
    data: { entries: [entryFor(a.data, a.dataType)], maxSamples: a.maxSamples },
    outDir: out,
    generation: {
      maxNewTokens: a.maxNewTokens,
      temperature: a.temperature,
      topK: a.topK,
      topP: a.topP,
      seed: a.seed,
      batchSize: a.batchSize,
    },
    sequenceLen: a.sequenceLen,
    linear: a.loadIn4bit ? quantizedLinear('nf4') : denseLinear,
    overlap,
    metric: a.metric,
    reportExamples: a.reportExamples,
    log,
  });
}

/** The metrics table as aligned text for the terminal. */
export function metricsTable(r: EvalResult): string {
  const names = metricNames(r.models);
  const header = ['model', 'loss', 'ppl', ...names];
  const rows = r.models.map((m) => [
    m.name,
    m.loss.loss.toFixed(4),
    m.loss.perplexity.toFixed(2),
    ...names.map((k) => (m.metrics[k] ?? NaN).toFixed(3)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export const evalCommand: CommandModule<GlobalArgs, EvalArgs> = {
  command: 'eval',
  describe:
    'compare the base model and adapters on held-out prompts (loss, perplexity, exact match, F1, ROUGE-L, report)',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'base model folder' })
      .option('adapter', {
        type: 'string',
        array: true,
        default: [],
        describe: 'PEFT adapter folder (repeat to compare several)',
      })
      .option('data', {
        type: 'string',
        demandOption: true,
        describe: 'held-out prompts with references (JSON, JSONL, Arrow, Parquet)',
      })
      .option('data-type', {
        type: 'string',
        default: 'alpaca',
        describe: "prompt template, as a recipe dataset's type (alpaca, chatml, chat)",
      })
      .option('out', { type: 'string', describe: 'output folder (default: eval/ beside the first adapter)' })
      .option('base', {
        type: 'boolean',
        default: true,
        describe: 'evaluate the base model too (--no-base to skip it)',
      })
      .option('max-new-tokens', { type: 'number', default: 128, describe: 'tokens to generate per prompt at most' })
      .option('temperature', { type: 'number', default: 0, describe: 'sampling temperature (0 = greedy)' })
      .option('top-k', { type: 'number', default: 0, describe: 'sample among the k most likely tokens (0 = all)' })
      .option('top-p', { type: 'number', default: 1, describe: 'nucleus sampling probability mass' })
      .option('seed', { type: 'number', default: 0, describe: 'sampling seed' })
      .option('batch-size', { type: 'number', default: 8, describe: 'prompts per generation batch' })
      .option('max-samples', { type: 'number', describe: 'evaluate only the first N examples' })
      .option('sequence-len', {
        type: 'number',
        describe: "truncate loss examples to this many tokens (default: the model's max_position_embeddings)",
      })
      .option('recipe', {
        type: 'string',
        describe: 'training recipe: refuse eval rows that are among its training rows',
      })
      .option('allow-overlap', {
        type: 'boolean',
        default: false,
        describe: 'with --recipe: warn about overlapping rows instead of refusing',
      })
      .option('metric', {
        type: 'string',
        describe:
          'JS/TS module whose default export (prediction, reference, record) returns a number or {name: number}',
      })
      .option('load-in-4bit', {
        type: 'boolean',
        default: false,
        describe: 'load the base quantized to NF4 (as QLoRA trained it)',
      })
      .option('report-examples', {
        type: 'number',
        default: 10,
        describe: 'examples shown side by side in report.md',
      }) as unknown as Argv<EvalArgs>,
  async handler(args) {
    await startRun(args);
    const log = (line: string) => {
      if (!args.quiet || /warning/i.test(line)) process.stderr.write(line + '\n');
    };
    const r = await runEvalCommand(args, log);
    process.stdout.write(metricsTable(r) + '\n');
    log(`ft: wrote ${r.files.results}, ${r.files.summary}, ${r.files.markdown}, ${r.files.html}`);
  },
};
