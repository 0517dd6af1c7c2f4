// A training run as a recipe describes it: set up (base model, data, checkpoint to resume, model with LoRA,
// optimizer), train (train/loop.ts), then finish (adapter, loss curve, eval section, model card, Hub push).
import * as path from 'node:path';
import { readFile } from 'node:fs/promises';
import { formatTrainableParams } from '../adapters/lora.ts';
import { savePeftAdapter } from '../adapters/peft.ts';
import { formatStats, newStats, type Dataset } from '../data/pipeline.ts';
import { prepareDataset, preparedPathOf } from '../data/prepared.ts';
import { meanLoss } from '../eval/loss.ts';
import type { EvalResult } from '../eval/types.ts';
import type { PushResult } from '../hub/push.ts';
import { readConfig } from '../model/config.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.ts';
import {
  loadCheckpoint,
  removeCheckpoints,
  resumeCheckpoint,
  TRAINER_STATE,
  type TrainerState,
} from '../train/checkpoint.ts';
import { claimOutputDir, OUTPUT_DIR_HINT } from '../train/output-dir.ts';
import { freshState, trainLoop, type BatchSource, type LoopConfig, type LoopResult } from '../train/loop.ts';
import { AdamW } from '../train/optimizer.ts';
import { learningRate, totalTrainingSteps } from '../train/schedule.ts';
import { FtError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs.ts';
import type { MetricsRecord } from '../util/metrics-log.ts';
import { writeLossCurve } from '../util/plot.ts';
import { finishRun, summaryLines, type RunFigures } from './finish.ts';
import { adamWConfigOf, recipeToYaml, scheduleOf } from './recipe.ts';
import type { Recipe } from './schema.ts';
import { describeChanges, settingsChanges, trainingSettings } from './resume.ts';
import { loadTrainableModel, resolveBaseModel, wasmHeapWarning, withHubDatasets } from './setup.ts';
import { checkSequenceLen } from './context.ts';

export interface TrainOptions {
  /** the recipe file (names errors, anchors the saved recipe) */
  recipeFile: string;
  /** true: the newest checkpoint in output_dir; a string: that checkpoint folder */
  resume?: boolean | string;
  /** resume even when the recipe changed keys that break an exact continuation */
  resumeForce?: boolean;
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
  signal: Signal | null;
  /** one record per logged step, as in metrics.jsonl */
  history: MetricsRecord[];
  finalLoss: number | null;
  finalEvalLoss: number | null;
  /** the recipe's eval section, base against the adapter (finished runs with `eval:` only) */
  eval: EvalResult | null;
  /** the Hub commit when the recipe has hub_model_id */
  pushed: PushResult | null;
}

type Signal = 'SIGINT' | 'SIGTERM';

/**
 * Trains a recipe to the end (or to an interruption) and writes adapter, checkpoints, metrics and loss curve;
 * a finished run then gets its eval section, model card and Hub push, with the training model already freed.
 */
export async function train(recipe: Recipe, opts: TrainOptions): Promise<TrainResult> {
  const lock = await claimOutputDir(recipe.output_dir, opts.log ?? (() => {}));
  try {
    return await trainInClaimedDir(recipe, opts);
  } finally {
    await lock.release();
  }
}

async function trainInClaimedDir(recipe: Recipe, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? (() => {});
  const modelDir = await resolveBaseModel(recipe, log);
  recipe = await withHubDatasets(recipe, log);
  const config = await readConfig(modelDir);
  checkSequenceLen(recipe, config, modelDir);
  const heapWarning = wasmHeapWarning(recipe, config);
  if (heapWarning) log(heapWarning);
  // Data and the checkpoint to resume are checked before the weights load: a bad dataset fails in seconds.
  const data = await trainData(recipe, await loadTokenizer(modelDir), opts.recipeFile, log);
  const G = recipe.gradient_accumulation_steps;
  const totalSteps = totalTrainingSteps({
    maxSteps: recipe.max_steps,
    numEpochs: recipe.num_epochs,
    microBatchesPerEpoch: data.source.perEpoch,
    gradAccum: G,
  });
  const resumeFrom = await resumeCheckpoint(recipe.output_dir, opts.resume || recipe.resume_from_checkpoint);
  if (resumeFrom) await checkResumeSettings(recipe, resumeFrom, opts.resumeForce ?? false, log);

  const model = await loadTrainableModel(recipe, modelDir, opts.recipeFile);
  const optimizer = new AdamW(Object.fromEntries(model.adapter.variables), adamWConfigOf(recipe));
  const schedule = scheduleOf(recipe, totalSteps);
  const cfg: LoopConfig = {
    outputDir: recipe.output_dir,
    totalSteps,
    gradAccumSteps: G,
    learningRate: (step) => learningRate(recipe.learning_rate, schedule, step),
    maxGradNorm: recipe.max_grad_norm,
    loggingSteps: recipe.logging_steps,
    evalSteps: recipe.eval_steps,
    saveSteps: recipe.save_steps,
    saveTotalLimit: recipe.save_total_limit,
    seed: recipe.seed,
    gradientCheckpointing: recipe.gradient_checkpointing,
    baseModel: recipe.base_model,
    settings: trainingSettings(recipe),
  };
  const stop = opts.handleSignals ? watchSignals(log) : null;
  let loop: LoopResult;
  try {
    log(formatTrainableParams(model.weights, model.adapter));
    let start: TrainerState;
    if (resumeFrom) {
      start = await loadCheckpoint(resumeFrom, model.adapter, optimizer);
      log(`ft: resumed from ${resumeFrom} at step ${start.globalStep}/${totalSteps}`);
    } else {
      start = freshState(cfg, model.adapter);
      // a fresh run owns output_dir: an earlier run's checkpoints would be pruned in its place and picked by --resume
      const stale = await removeCheckpoints(recipe.output_dir);
      if (stale.length > 0)
        log(
          `ft: fresh run in ${recipe.output_dir}: removed checkpoint-${stale.join(', checkpoint-')} of an earlier run (--resume continues one instead)`,
        );
    }
    await writeFileAtomic(
      path.join(recipe.output_dir, 'recipe.yaml'),
      recipeToYaml(recipe, `resolved recipe of ${opts.recipeFile}`),
    );
    const evaluate =
      recipe.val_set_size > 0
        ? async () => (await meanLoss(model.weights, data.ds.batches({ part: 'validation' }))).loss
        : undefined;
    loop = await trainLoop(model, data.source, optimizer, cfg, start, {
      evaluate,
      stopRequested: () => stop?.signal ?? null,
      onStep: opts.onStep,
      stopAfterSteps: opts.stopAfterSteps,
    });
    if (!loop.interrupted)
      await savePeftAdapter(path.join(recipe.output_dir, 'adapter'), model.adapter, recipe.base_model, {
        hint: OUTPUT_DIR_HINT,
      });
  } finally {
    stop?.dispose();
    optimizer.dispose();
    disposeLlama(model.weights);
    await data.ds.close();
  }

  const outputDir = recipe.output_dir;
  const result: TrainResult = {
    outputDir,
    adapterDir: loop.checkpoint,
    steps: loop.steps,
    totalSteps,
    interrupted: loop.interrupted,
    signal: stop?.signal ?? null,
    history: loop.history,
    finalLoss: loop.finalLoss,
    finalEvalLoss: loop.finalEvalLoss,
    eval: null,
    pushed: null,
  };
  if (loop.interrupted) {
    log(`ft: stopped at step ${loop.steps}/${totalSteps}; checkpoint ${loop.checkpoint} (resume with --resume)`);
    return result;
  }
  const adapterDir = path.join(outputDir, 'adapter');
  await writeLossCurve(path.join(outputDir, 'loss.svg'), loop.history, {
    title: `ft: ${path.basename(opts.recipeFile)} (${path.basename(modelDir)})`,
  });
  const figures: RunFigures = {
    steps: loop.steps,
    epochs: loop.epochs,
    tokens: loop.tokens,
    seconds: loop.seconds,
    finalLoss: loop.finalLoss,
    finalEvalLoss: loop.finalEvalLoss,
    dataSummary: data.summary,
  };
  const finished = await finishRun(recipe, opts.recipeFile, adapterDir, figures, log);
  for (const line of summaryLines(figures, outputDir, adapterDir, finished)) log(line);
  return { ...result, adapterDir, eval: finished.eval, pushed: finished.pushed };
}

interface TrainData {
  ds: Dataset;
  /** the training split as the loop reads it (with its micro-batches per epoch) */
  source: BatchSource;
  /** what the data pipeline kept and dropped, in one line */
  summary: string;
}

/** Opens the recipe's datasets, prepared once (data/prepared.ts), and counts an epoch's micro-batches from the index. */
async function trainData(
  recipe: Recipe,
  tokenizer: Tokenizer,
  recipeFile: string,
  log: (line: string) => void,
): Promise<TrainData> {
  const ds = await prepareDataset(recipe, tokenizer, path.dirname(path.resolve(recipeFile)), {
    dir: preparedPathOf(recipe),
    log,
  });
  const stats = newStats();
  const perEpoch = await ds.batchCount('train', stats);
  const summary = formatStats(stats, recipe.sequence_len);
  log(`ft: train data: ${summary}; ${perEpoch} micro-batches per epoch`);
  const source: BatchSource = {
    perEpoch,
    batches: (epoch, startBatch) => ds.batches({ part: 'train', epoch, startBatch }),
  };
  return { ds, source, summary };
}

/**
 * Says what the recipe changed since the checkpoint's run; refuses changes that break an exact continuation
 * (learning rate, batch size, data, sequence length, LoRA, ...) unless forced.
 */
async function checkResumeSettings(
  recipe: Recipe,
  checkpoint: string,
  force: boolean,
  log: (line: string) => void,
): Promise<void> {
  const stateFile = path.join(checkpoint, TRAINER_STATE);
  const saved = (JSON.parse(await readFile(stateFile, 'utf8')) as TrainerState).settings;
  if (!saved) {
    log(`ft: warning: ${stateFile} does not record the recipe it was trained with; changes since cannot be checked`);
    return;
  }
  const changes = settingsChanges(saved, trainingSettings(recipe));
  const breaking = changes.filter((c) => c.breaking);
  if (breaking.length > 0 && !force) {
    throw new FtError(
      `resume from ${checkpoint}: the recipe changed ${describeChanges(breaking)} since the checkpoint; the run would not continue as it started (--resume-force resumes anyway)`,
    );
  }
  if (changes.length > 0)
    log(`ft: ${breaking.length > 0 ? 'warning: ' : ''}resuming with changed ${describeChanges(changes)}`);
}

/**
 * SIGINT/SIGTERM ask the loop to stop after the step in progress. The handlers are removed at the first signal, so
 * a second Ctrl-C ends the process at once (checkpoints are written atomically: the last one stays whole).
 */
function watchSignals(log: (line: string) => void): { readonly signal: Signal | null; dispose(): void } {
  let signal: Signal | null = null;
  const handlers: Record<Signal, () => void> = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
  const dispose = () => {
    for (const [s, h] of Object.entries(handlers)) process.off(s, h);
  };
  const onSignal = (s: Signal) => {
    signal = s;
    dispose();
    log(
      `\nft: ${s}: saving a checkpoint after this step, then stopping (${s === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'} again stops at once)`,
    );
  };
  for (const [s, h] of Object.entries(handlers)) process.on(s, h);
  return {
    get signal() {
      return signal;
    },
    dispose,
  };
}
