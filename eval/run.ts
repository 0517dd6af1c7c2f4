// `ft eval`: the base model and each adapter on the same held-out prompts, one base in memory (adapters attached
// and detached in turn): loss/perplexity on the references, generated responses, metrics, and the report files.
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { checkAgainstModel, loadPeftAdapter, readPeftAdapter } from '../adapters/peft.ts';
import { toBatches } from '../data/batch.ts';
import { formatSpec, recordFormat } from '../data/example.ts';
import type { DataTokenizer } from '../data/types.ts';
import { disposeLlama } from '../model/llama.ts';
import type { LinearFactory } from '../model/linear.ts';
import { readConfig } from '../model/config.ts';
import { expectedTensors, loadLlama } from '../model/load.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { hfModuleName, type LlamaWeights } from '../model/types.ts';
import { readMetrics, type MetricsRecord } from '../util/metrics-log.ts';
import { FtError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs.ts';
import type { EvalResult, GenerationSettings, ModelResult, TaskScores } from './types.ts';
import { progress } from '../util/progress.ts';
import { generateResponses, stopMarkers } from './generate.ts';
import { readEvalItems, type EvalItem, type EvalSource } from './items.ts';
import { meanLoss, type LossResult } from './loss.ts';
import { meanScores, scoreExample } from './metrics.ts';
import { checkOverlap } from './overlap.ts';
import { htmlReport, markdownReport } from './report.ts';
import { loadUserMetric } from './user-metric.ts';

export const DEFAULT_GENERATION: GenerationSettings = {
  maxNewTokens: 128,
  temperature: 0,
  topK: 0,
  topP: 1,
  seed: 0,
  batchSize: 8,
};

export interface EvalOptions {
  /** base model folder */
  model: string;
  /** PEFT adapter folders, each evaluated on the same base */
  adapters: string[];
  /** evaluate the base model without an adapter too (default true) */
  includeBase?: boolean;
  data: EvalSource;
  /** where results.jsonl, summary.json, report.md and report.html go */
  outDir: string;
  generation?: Partial<GenerationSettings>;
  /** loss examples longer than this are truncated (default: the model's max_position_embeddings) */
  sequenceLen?: number;
  trainOnInputs?: boolean;
  /** examples per loss batch */
  lossBatchSize?: number;
  /** how base projections are built (NF4 for a QLoRA base); default float */
  linear?: LinearFactory;
  /** training rows to refuse (or, with allow, warn about) eval rows overlapping */
  overlap?: { hashes: Set<string>; trainedOn: string; allow: boolean };
  /** a user metric module (see eval/user-metric.ts) */
  metric?: string;
  /** examples shown side by side in report.md */
  reportExamples?: number;
  /** one line of chatter (stderr in the CLI) */
  log?: (line: string) => void;
}

/** Short, distinct model labels: the adapter folder name, or its parent/name when that is generic or taken. */
export function adapterLabels(dirs: string[]): string[] {
  const base = dirs.map((d) => path.basename(path.resolve(d)));
  return dirs.map((d, i) => {
    const full = path.resolve(d);
    const clash = base[i] === 'base' || base[i] === 'adapter' || base.filter((b) => b === base[i]).length > 1;
    return clash ? `${path.basename(path.dirname(full))}/${base[i]}` : base[i];
  });
}

/**
 * A warning when an adapter's base_model_name_or_path does not name the model folder (shapes are checked strictly
 * elsewhere; a name mismatch only warns, since one base is often stored under several paths or Hub ids).
 */
export function baseNameWarning(
  adapterDir: string,
  baseModel: string | null,
  modelDir: string,
  modelNames: string[],
): string | null {
  if (!baseModel) return null;
  const tail = (s: string) =>
    s
      .replace(/[\\/]+$/, '')
      .split(/[\\/]/)
      .pop()!
      .toLowerCase();
  // a Hub cache snapshot folder (models--org--name/snapshots/rev) stands for org/name
  const cache = /models--([^/\\]+)--([^/\\]+)[/\\]snapshots[/\\]/.exec(path.resolve(modelDir) + '/');
  const names = [path.resolve(modelDir), ...modelNames, ...(cache ? [`${cache[1]}/${cache[2]}`] : [])];
  const same = names.some(
    (n) => n === baseModel || path.resolve(n) === path.resolve(baseModel) || tail(n) === tail(baseModel),
  );
  return same
    ? null
    : `adapter ${adapterDir} was trained on base_model_name_or_path '${baseModel}', not on ${modelDir} (shapes match; scores may mean little)`;
}

/** metrics.jsonl of the run an adapter came from: in the adapter folder or its parent (output_dir/adapter, output_dir/checkpoint-N). */
export function trainingMetricsOf(adapterDir: string): MetricsRecord[] | null {
  for (const dir of [adapterDir, path.dirname(path.resolve(adapterDir))]) {
    const file = path.join(dir, 'metrics.jsonl');
    if (existsSync(file)) return readMetrics(file);
  }
  return null;
}

/** Mean loss and perplexity over the items' response tokens, batched as training batches them (data/batch.ts). */
export async function itemsLoss(
  w: LlamaWeights,
  tok: DataTokenizer,
  items: EvalItem[],
  batchSize: number,
  sequenceLen: number,
): Promise<LossResult> {
  const examples = (async function* () {
    for (const it of items) yield it.example;
  })();
  return meanLoss(
    w,
    toBatches(examples, { microBatchSize: batchSize, sequenceLen, samplePacking: false, padId: tok.padId }),
  );
}

function byTask(items: EvalItem[], scores: Record<string, number>[]): Record<string, TaskScores> {
  const groups = new Map<string, Record<string, number>[]>();
  items.forEach((it, i) => {
    if (it.task === null) return;
    if (!groups.has(it.task)) groups.set(it.task, []);
    groups.get(it.task)!.push(scores[i]);
  });
  return Object.fromEntries(
    [...groups]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([t, rows]) => [t, { count: rows.length, metrics: meanScores(rows) }]),
  );
}

/** Runs the whole comparison and writes the report files; every input is checked before the first generation. */
export async function runEval(opts: EvalOptions): Promise<EvalResult> {
  const log = opts.log ?? (() => {});
  const gen: GenerationSettings = { ...DEFAULT_GENERATION, ...opts.generation };
  const includeBase = opts.includeBase ?? true;
  if (!includeBase && opts.adapters.length === 0)
    throw new Error('runEval: nothing to evaluate (no base, no adapters)');

  // every input is checked before the (possibly large) base is loaded, let alone generated with
  const tok = await loadTokenizer(opts.model);
  const config = await readConfig(opts.model);
  const metric = opts.metric ? await loadUserMetric(opts.metric) : null;
  const sequenceLen = opts.sequenceLen ?? config.maxPositionEmbeddings;
  const items = await readEvalItems(opts.data, tok, { sequenceLen, trainOnInputs: opts.trainOnInputs, log });
  // the metric scores one example (its reference as the answer) before anything is generated
  metric?.score(items[0].reference, items[0].reference, {
    prompt: items[0].prompt,
    task: items[0].task,
    where: items[0].where,
  });
  let overlap: EvalResult['overlap'] = null;
  if (opts.overlap) {
    const r = checkOverlap(items, opts.overlap.hashes, {
      allow: opts.overlap.allow,
      trainedOn: opts.overlap.trainedOn,
    });
    if (r.message) log(`ft: WARNING: ${r.message}`);
    overlap = { trainedOn: opts.overlap.trainedOn, overlapping: r.overlapping.length };
  }
  const shapes = new Map(expectedTensors(config).map((t) => [t.name, t.shape]));
  const modelNames = typeof config.raw._name_or_path === 'string' ? [config.raw._name_or_path] : [];
  const labels = adapterLabels(opts.adapters);
  const adapters = [];
  for (const [i, dir] of opts.adapters.entries()) {
    const files = await readPeftAdapter(dir);
    checkAgainstModel(
      files,
      config.numHiddenLayers,
      (layer, proj) => shapes.get(`${hfModuleName(layer, proj)}.weight`) as [number, number],
    );
    const warning = baseNameWarning(dir, files.baseModel, opts.model, modelNames);
    if (warning) log(`ft: warning: ${warning}`);
    adapters.push({ name: labels[i], dir, baseModel: files.baseModel });
  }

  const weights = await loadLlama(opts.model, { linear: opts.linear });
  try {
    const markers = [
      ...new Set(opts.data.entries.flatMap((e) => stopMarkers(recordFormat(formatSpec(e, tok), tok), tok))),
    ];
    const prompts = items.map((it) => it.promptIds);
    const lossBatch = opts.lossBatchSize ?? gen.batchSize;

    const runs = [
      ...(includeBase ? [{ name: 'base', dir: null as string | null, baseModel: null as string | null }] : []),
      ...adapters,
    ];
    const models: ModelResult[] = [];
    for (const run of runs) {
      const adapter = run.dir ? await loadPeftAdapter(run.dir, weights) : null;
      try {
        adapter?.setTraining(false);
        const loss = await itemsLoss(weights, tok, items, lossBatch, sequenceLen);
        const bar = progress(`eval ${run.name}`, items.length, 'prompts');
        const started = performance.now();
        let outputs: string[];
        try {
          outputs = await generateResponses(weights, tok, prompts, {
            ...gen,
            markers,
            onProgress: (n) => bar.update(n),
          });
        } finally {
          bar.stop();
        }
        const generationSeconds = (performance.now() - started) / 1000;
        let scores: Record<string, number>[];
        try {
          scores = items.map((it, i) => {
            const s: Record<string, number> = { ...scoreExample(outputs[i], it.reference) };
            return metric
              ? {
                  ...s,
                  ...metric.score(outputs[i], it.reference, { prompt: it.prompt, task: it.task, where: it.where }),
                }
              : s;
          });
        } catch (e) {
          throw await keepGenerations(e, opts.outDir, items, [
            ...models.map((m) => ({ name: m.name, outputs: m.outputs })),
            { name: run.name, outputs },
          ]);
        }
        const result: ModelResult = {
          name: run.name,
          adapter: run.dir,
          baseModel: run.baseModel,
          loss,
          metrics: meanScores(scores),
          byTask: byTask(items, scores),
          outputs,
          scores,
          generationSeconds,
          training: run.dir ? trainingMetricsOf(run.dir) : null,
        };
        models.push(result);
        log(
          `ft: eval ${run.name}: loss ${loss.loss.toFixed(4)}, ppl ${loss.perplexity.toFixed(2)}, ${Object.entries(
            result.metrics,
          )
            .map(([k, v]) => `${k} ${v.toFixed(3)}`)
            .join(', ')} (${generationSeconds.toFixed(1)}s)`,
        );
      } finally {
        adapter?.detach();
      }
    }
    const result: EvalResult = {
      outDir: opts.outDir,
      model: opts.model,
      data: opts.data.entries.map((e) => e.path).join(', '),
      items,
      models,
      generation: gen,
      overlap,
      files: {
        results: path.join(opts.outDir, 'results.jsonl'),
        summary: path.join(opts.outDir, 'summary.json'),
        markdown: path.join(opts.outDir, 'report.md'),
        html: path.join(opts.outDir, 'report.html'),
      },
    };
    await writeOutputs(result, opts.reportExamples ?? 10);
    return result;
  } finally {
    disposeLlama(weights);
  }
}

/**
 * After a metric failed on generated answers: writes results.jsonl with every output so far (no metrics) and returns
 * the error, saying where they are.
 */
async function keepGenerations(
  e: unknown,
  outDir: string,
  items: EvalItem[],
  models: { name: string; outputs: string[] }[],
): Promise<unknown> {
  if (!(e instanceof FtError)) return e;
  const file = path.join(outDir, 'results.jsonl');
  await fsp.mkdir(outDir, { recursive: true });
  await writeFileAtomic(file, exampleLines(items, models));
  return new FtError(`${e.message}; the generations are kept in ${file}`);
}

/** One results.jsonl line per example: prompt, reference, each model's output and metrics. */
export function resultLines(r: EvalResult): string {
  return exampleLines(r.items, r.models);
}

/** The results.jsonl lines of `models`; without scores (generations kept after a metric failed), no metrics field. */
function exampleLines(
  items: EvalItem[],
  models: { name: string; outputs: string[]; scores?: Record<string, number>[] }[],
): string {
  return items
    .map((it, i) =>
      JSON.stringify({
        index: it.index,
        where: it.where,
        ...(it.task !== null ? { task: it.task } : {}),
        prompt: it.prompt,
        reference: it.reference,
        outputs: Object.fromEntries(models.map((m) => [m.name, m.outputs[i]])),
        ...(models.every((m) => m.scores)
          ? { metrics: Object.fromEntries(models.map((m) => [m.name, m.scores![i]])) }
          : {}),
      }),
    )
    .map((l) => l + '\n')
    .join('');
}

/** summary.json: aggregate and per-task metrics, loss and perplexity of each model, and the settings used. */
export function summaryOf(r: EvalResult) {
  return {
    model: r.model,
    data: r.data,
    examples: r.items.length,
    generation: r.generation,
    overlap: r.overlap,
    models: r.models.map((m) => ({
      name: m.name,
      adapter: m.adapter,
      base_model_name_or_path: m.baseModel,
      loss: m.loss.loss,
      perplexity: m.loss.perplexity,
      loss_tokens: m.loss.tokens,
      metrics: m.metrics,
      by_task: m.byTask,
      generation_seconds: Number(m.generationSeconds.toFixed(3)),
    })),
  };
}

async function writeOutputs(r: EvalResult, reportExamples: number): Promise<void> {
  await writeFileAtomic(r.files.results, resultLines(r));
  await writeFileAtomic(r.files.summary, JSON.stringify(summaryOf(r), null, 2) + '\n');
  await writeFileAtomic(r.files.markdown, markdownReport(r, reportExamples));
  await writeFileAtomic(r.files.html, htmlReport(r));
}
