// The training loop: AdamW on the LoRA factors only, warmup + schedule, gradient accumulation,
// global-norm clipping, periodic logging / eval / checkpoints, exact resume, checkpoint on SIGINT/SIGTERM.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { formatTrainableParams } from '../adapters/lora.ts';
import { savePeftAdapter } from '../adapters/peft.ts';
import { formatStats, newStats, type Dataset } from '../data/pipeline.ts';
import { prepareDataset, preparedPathOf } from '../data/prepared.ts';
import { meanLoss } from '../eval/loss.ts';
import { disposeLlama, trainingLoss, type ForwardOptions } from '../model/llama.ts';
import { readConfig } from '../model/config.ts';
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.ts';
import type { TrainBatch } from '../model/types.ts';
import type { EvalResult } from '../eval/run.ts';
import type { PushResult } from '../hub/push.ts';
import { progress } from '../util/progress.ts';
import { writeFileAtomic } from '../util/fs.ts';
import type { RngState } from '../util/rng.ts';
import { checkpointDir, loadCheckpoint, removeCheckpoints, resumeCheckpoint, saveCheckpoint, type LogWindow, type TrainerState } from './checkpoint.ts';
import { clipGradNorm, type NamedGrads } from './clip.ts';
import { MetricsLog, readMetrics, type MetricsRecord } from './metrics-log.ts';
import { AdamW, namedGrads } from './optimizer.ts';
import { finishRun, summaryLines, type RunFigures } from './finish.ts';
import { writeLossCurve } from './plot.ts';
import { adamWConfigOf, recipeToYaml, scheduleOf, type Recipe } from './recipe.ts';
import { learningRate, totalTrainingSteps } from './schedule.ts';
import { loadTrainableModel, resolveBaseModel, wasmHeapWarning, type TrainableModel } from './setup.ts';

export interface TrainOptions {
  /** the recipe file (names errors, anchors the saved recipe) */
  recipeFile: string;
  /** true: the newest checkpoint in output_dir; a string: that checkpoint folder */
  resume?: boolean | string;
  /** one line of chatter (stderr in the CLI) */
  log?: (line: string) => void;
  /** stop after this many optimizer steps in this process (tests simulate an interruption with it) */
  stopAfterSteps?: number;
  /** install SIGINT/SIGTERM handlers that checkpoint and stop (the CLI does) */
  handleSignals?: boolean;
  /** called after every optimizer step (tests watch the tensor count with it) */
  onStep?: (step: number) => void;
}

export interface TrainResult {
  outputDir: string;
  /** the final adapter (PEFT folder `output_dir/adapter`), or the last checkpoint when interrupted */
  adapterDir: string;
  steps: number;
  totalSteps: number;
  interrupted: boolean;
  /** the signal that stopped the run early, if one did */
  signal: 'SIGINT' | 'SIGTERM' | null;
  /** one record per logged step, as in metrics.jsonl */
  history: MetricsRecord[];
  finalLoss: number | null;
  finalEvalLoss: number | null;
  /** the recipe's eval section, base against the adapter (finished runs with `eval:` only) */
  eval: EvalResult | null;
  /** the Hub commit when the recipe has hub_model_id */
  pushed: PushResult | null;
}

/**
 * Trains a recipe to the end (or to an interruption) and writes adapter, checkpoints, metrics and loss curve;
 * a finished run then gets its eval section, model card and Hub push, with the training model already freed.
 */
export async function train(recipe: Recipe, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? (() => {});
  const modelDir = await resolveBaseModel(recipe, log);
  const heapWarning = wasmHeapWarning(recipe, await readConfig(modelDir));
  if (heapWarning) log(heapWarning);
  // Data and the checkpoint to resume are checked before the weights load: a bad dataset fails in seconds.
  const data = await trainData(recipe, await loadTokenizer(modelDir), opts.recipeFile, log);
  const resumeFrom = await resumeCheckpoint(recipe.output_dir, opts.resume || recipe.resume_from_checkpoint);
  const model = await loadTrainableModel(recipe, modelDir, opts.recipeFile);
  let trained: Trained;
  try {
    trained = await run(recipe, { ...model, modelDir }, data, resumeFrom, opts, log);
  } finally {
    disposeLlama(model.weights);
    await data.ds.close();
  }
  const { result, figures } = trained;
  if (result.interrupted) return result;
  const finished = await finishRun(recipe, opts.recipeFile, result.adapterDir, figures, log);
  for (const line of summaryLines(figures, result.outputDir, result.adapterDir, finished)) log(line);
  return { ...result, eval: finished.eval, pushed: finished.pushed };
}

interface Trained {
  result: TrainResult;
  figures: RunFigures;
}

interface TrainData {
  ds: Dataset;
  /** micro-batches in one epoch of the training split */
  perEpoch: number;
  /** what the data pipeline kept and dropped, in one line */
  summary: string;
}

/** Opens the recipe's datasets, prepared once (data/prepared.ts), and counts an epoch's micro-batches from the index. */
async function trainData(recipe: Recipe, tokenizer: Tokenizer, recipeFile: string, log: (line: string) => void): Promise<TrainData> {
  const ds = await prepareDataset(recipe, tokenizer, path.dirname(path.resolve(recipeFile)), { dir: preparedPathOf(recipe), log });
  const stats = newStats();
  const perEpoch = await ds.batchCount('train', stats);
  const summary = formatStats(stats, recipe.sequence_len);
  log(`ft: train data: ${summary}; ${perEpoch} micro-batches per epoch`);
  return { ds, perEpoch, summary };
}

/** Micro-batches from `epoch`/`batchInEpoch` on, epoch after epoch; `pos` tracks what was consumed, for checkpoints. */
async function* microBatches(ds: Dataset, pos: { epoch: number; batchInEpoch: number }): AsyncGenerator<TrainBatch> {
  for (;;) {
    for await (const b of ds.batches({ part: 'train', epoch: pos.epoch, startBatch: pos.batchInEpoch })) {
      pos.batchInEpoch++;
      yield b;
    }
    pos.epoch++;
    pos.batchInEpoch = 0;
  }
}

async function run(
  recipe: Recipe,
  model: TrainableModel & { modelDir: string },
  { ds, perEpoch, summary: dataSummary }: TrainData,
  resumeFrom: string | null,
  opts: TrainOptions,
  log: (line: string) => void,
): Promise<Trained> {
  const { weights, adapter, modelDir } = model;
  const outputDir = recipe.output_dir;
  log(formatTrainableParams(weights, adapter));
  const G = recipe.gradient_accumulation_steps;
  const totalSteps = totalTrainingSteps({ maxSteps: recipe.max_steps, numEpochs: recipe.num_epochs, microBatchesPerEpoch: perEpoch, gradAccum: G });
  const schedule = scheduleOf(recipe, totalSteps);
  const hasValidation = recipe.val_set_size > 0;

  const params = Object.fromEntries(adapter.variables); // PEFT key -> variable
  const optimizer = new AdamW(params, adamWConfigOf(recipe));
  const baseName = recipe.base_model;

  const emptyWindow = (): LogWindow => ({ lossSum: 0, microBatches: 0, tokens: 0 });
  let state: TrainerState = { globalStep: 0, totalSteps, epoch: 0, batchInEpoch: 0, dropoutRng: adapter.dropoutState(), seed: recipe.seed, logWindow: emptyWindow() };
  if (resumeFrom) {
    state = { ...(await loadCheckpoint(resumeFrom, adapter, optimizer)), totalSteps };
    log(`ft: resumed from ${resumeFrom} at step ${state.globalStep}/${totalSteps}`);
    if (state.seed !== recipe.seed) log(`ft: warning: the checkpoint was trained with seed ${state.seed}, the recipe says ${recipe.seed}; the run will not match an uninterrupted one`);
  } else {
    // a fresh run owns output_dir: an earlier run's checkpoints would be pruned in its place and picked by --resume
    const stale = await removeCheckpoints(outputDir);
    if (stale.length > 0) log(`ft: fresh run in ${outputDir}: removed checkpoint-${stale.join(', checkpoint-')} of an earlier run (--resume continues one instead)`);
  }
  const metrics = await MetricsLog.open(path.join(outputDir, 'metrics.jsonl'), resumeFrom ? state.globalStep : undefined);
  await writeFileAtomic(path.join(outputDir, 'recipe.yaml'), recipeToYaml(recipe, `resolved recipe of ${opts.recipeFile}`));

  // A signal asks to stop: the current step finishes, a checkpoint is written, and train() returns.
  let stopRequested: 'SIGINT' | 'SIGTERM' | null = null;
  const onSignal = (sig: 'SIGINT' | 'SIGTERM') => {
    if (stopRequested) return;
    stopRequested = sig;
    log(`\nft: ${sig}: saving a checkpoint after this step, then stopping`);
  };
  const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
  if (opts.handleSignals) for (const [s, h] of Object.entries(handlers)) process.on(s, h);

  const pos = { epoch: state.epoch, batchInEpoch: state.batchInEpoch };
  const batches = microBatches(ds, pos);
  const epochOf = () => pos.epoch + (perEpoch > 0 ? pos.batchInEpoch / perEpoch : 0);
  const bar = progress('train', totalSteps, 'steps', ['loss', 'lr', 'tok_s']);
  const started = performance.now();
  let window = { ...state.logWindow }; // reset at each logging step
  let windowSince = performance.now();
  let windowTokensHere = 0; // the window's tokens trained by this process, for tokens/s
  let lastLoss: number | null = null;
  let lastEval: number | null = null;
  let stepsThisRun = 0;
  let tokensThisRun = 0;
  let lastSaved = -1;

  const checkpoint = async () => {
    state = { ...state, epoch: pos.epoch, batchInEpoch: pos.batchInEpoch, dropoutRng: adapter.dropoutState(), logWindow: { ...window } };
    const dir = await saveCheckpoint(outputDir, state, adapter, optimizer, baseName, recipe.save_total_limit);
    lastSaved = state.globalStep;
    return dir;
  };
  const evaluate = async () => {
    adapter.setTraining(false);
    const r = await meanLoss(weights, ds.batches({ part: 'validation' }));
    adapter.setTraining(true);
    return r.loss;
  };

  // gradient checkpointing recomputes layers in the backward pass: LoRA dropout is rewound so its masks repeat
  const replay = { save: () => adapter.dropoutState(), restore: (s: unknown) => adapter.setDropoutState(s as RngState) };
  const forwardOpts: ForwardOptions = recipe.gradient_checkpointing ? { checkpoint: { replay } } : {};
  adapter.setTraining(true);
  bar.update(state.globalStep);
  try {
    while (state.globalStep < totalSteps && !stopRequested && (opts.stopAfterSteps === undefined || stepsThisRun < opts.stopAfterSteps)) {
      const lr = learningRate(recipe.learning_rate, schedule, state.globalStep);
      // Accumulate G micro-batch gradients of loss/G (HF Trainer's scaling), summed in `acc`.
      let acc: NamedGrads | null = null;
      for (let g = 0; g < G; g++) {
        const { value: batch } = await batches.next();
        const b = batch as TrainBatch;
        const { value, grads: byVarName } = tf.variableGrads(() => tf.div(trainingLoss(weights, b, forwardOpts).loss, G) as tf.Scalar, adapter.trainableVariables());
        const grads = namedGrads(params, byVarName);
        window.lossSum += (await value.data())[0] * G;
        value.dispose();
        window.microBatches++;
        let tokens = 0;
        for (let i = 0; i < b.segments.length; i++) if (b.segments[i] !== 0) tokens++;
        window.tokens += tokens;
        windowTokensHere += tokens;
        tokensThisRun += tokens;
        if (acc === null) acc = grads;
        else {
          for (const k of Object.keys(grads)) {
            const sum = tf.add(acc[k], grads[k]);
            acc[k].dispose();
            grads[k].dispose();
            acc[k] = sum;
          }
        }
      }
      const clipped = clipGradNorm(acc!, recipe.max_grad_norm);
      tf.dispose(Object.values(acc!));
      optimizer.step(clipped.grads, lr);
      tf.dispose(Object.values(clipped.grads));
      state.globalStep++;
      stepsThisRun++;

      const step = state.globalStep;
      const now = performance.now();
      const record: MetricsRecord = { step, epoch: round(epochOf(), 4) };
      if (step % recipe.logging_steps === 0 || step === totalSteps) {
        lastLoss = window.lossSum / window.microBatches;
        const secs = (now - windowSince) / 1000;
        Object.assign(record, { loss: finite(lastLoss), lr, grad_norm: finite(clipped.totalNorm), tokens_per_s: round(windowTokensHere / secs, 1) });
        window = emptyWindow();
        windowSince = performance.now();
        windowTokensHere = 0;
      }
      if (hasValidation && ((recipe.eval_steps !== undefined && step % recipe.eval_steps === 0) || step === totalSteps)) {
        lastEval = await evaluate();
        record.eval_loss = finite(lastEval);
      }
      if (Object.keys(record).length > 2) {
        record.elapsed_s = round((performance.now() - started) / 1000, 2);
        metrics.append(record);
      }
      bar.update(step, { loss: lastLoss?.toFixed(4) ?? '-', lr: lr.toExponential(2), tok_s: record.tokens_per_s ?? '-' });
      if (recipe.save_steps !== undefined && step % recipe.save_steps === 0 && step !== totalSteps) await checkpoint();
      opts.onStep?.(step);
    }
  } finally {
    bar.stop();
    if (opts.handleSignals) for (const [s, h] of Object.entries(handlers)) process.off(s, h);
    await batches.return(undefined);
  }

  const done = state.globalStep >= totalSteps;
  const seconds = (performance.now() - started) / 1000;
  const figures: RunFigures = { steps: state.globalStep, epochs: epochOf(), tokens: tokensThisRun, seconds, finalLoss: lastLoss, finalEvalLoss: lastEval, dataSummary };
  const result = { outputDir, steps: state.globalStep, totalSteps, signal: stopRequested, finalLoss: lastLoss, finalEvalLoss: lastEval, eval: null, pushed: null };
  if (!done) {
    const dir = lastSaved === state.globalStep ? checkpointDir(outputDir, state.globalStep) : await checkpoint();
    log(`ft: stopped at step ${state.globalStep}/${totalSteps}; checkpoint ${dir} (resume with --resume)`);
    optimizer.dispose();
    return { result: { ...result, adapterDir: dir, interrupted: true, history: readMetrics(metrics.file) }, figures };
  }

  await checkpoint();
  optimizer.dispose();
  const adapterDir = path.join(outputDir, 'adapter');
  await savePeftAdapter(adapterDir, adapter, baseName);
  const history = readMetrics(metrics.file);
  await writeLossCurve(path.join(outputDir, 'loss.svg'), history, { title: `ft: ${path.basename(opts.recipeFile)} (${path.basename(modelDir)})` });
  return { result: { ...result, adapterDir, interrupted: false, history }, figures };
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));
const finite = (x: number) => (Number.isFinite(x) ? x : null);
