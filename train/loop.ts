// The training loop over built parts: AdamW on the LoRA factors only, gradient accumulation normalized by the
// trained tokens of the whole window, global-norm clipping, periodic logging / evaluation / checkpoints, exact
// resume, a stop after the step in progress when asked. It knows no recipe, eval, export or Hub: the caller
// (recipes/train.ts) builds the model, the data, the optimizer and the hooks.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { Adapter } from '../adapters/lora.ts';
import { trainingLoss, type ForwardOptions } from '../model/llama.ts';
import type { LlamaWeights, TrainBatch } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { MetricsLog, readMetrics, type MetricsRecord } from '../util/metrics-log.ts';
import { progress } from '../util/progress.ts';
import type { RngState } from '../util/rng.ts';
import { checkpointDir, saveCheckpoint, type LogWindow, type TrainerState } from './checkpoint.ts';
import { clipGradNorm, type NamedGrads } from './clip.ts';
import { namedGrads, type AdamW } from './optimizer.ts';

/** The model being trained: a frozen base with a LoRA adapter attached. */
export interface TrainableModel {
  weights: LlamaWeights;
  adapter: Adapter;
}

/** Where training micro-batches come from: epochs of a fixed size, each reproducible from any batch index. */
export interface BatchSource {
  /** micro-batches in one epoch */
  perEpoch: number;
  /** the micro-batches of `epoch` from index `startBatch` on, in the same order every time */
  batches(epoch: number, startBatch: number): AsyncIterable<TrainBatch>;
}

export interface LoopConfig {
  outputDir: string;
  totalSteps: number;
  /** micro-batches per optimizer step */
  gradAccumSteps: number;
  /** the learning rate of optimizer step `step` (0-based) */
  learningRate: (step: number) => number;
  /** clip_grad_norm_'s max_norm (0: no clipping) */
  maxGradNorm: number;
  loggingSteps: number;
  /** evaluate every this many steps (and after the last one) when `evaluate` is given */
  evalSteps?: number;
  /** checkpoint every this many steps; a checkpoint is always written at the end and on a stop */
  saveSteps?: number;
  saveTotalLimit?: number;
  /** the run's seed, recorded in checkpoints */
  seed: number;
  /** recompute each decoder layer in the backward pass (LoRA dropout replayed) */
  gradientCheckpointing: boolean;
  /** base_model_name_or_path written into the checkpoints' adapter_config.json */
  baseModel: string | null;
  /** the settings the run trains under, kept in each checkpoint so a resume can say what changed */
  settings?: Record<string, unknown>;
}

export interface LoopHooks {
  /** the validation loss of the model as it stands */
  evaluate?: () => Promise<number>;
  /** polled after every step (the loop lets the event loop run first): a reason to stop, or null */
  stopRequested?: () => string | null;
  /** after every optimizer step */
  onStep?: (step: number) => void;
  /** stop after this many optimizer steps in this call (tests simulate an interruption with it) */
  stopAfterSteps?: number;
}

export interface LoopResult {
  /** optimizer steps done, counting those before a resume */
  steps: number;
  /** true when the loop stopped before totalSteps */
  interrupted: boolean;
  /** the checkpoint written last (at the end, or at the stop) */
  checkpoint: string;
  /** one record per logged step, as in metrics.jsonl */
  history: MetricsRecord[];
  finalLoss: number | null;
  finalEvalLoss: number | null;
  /** fractional epochs reached */
  epochs: number;
  /** non-padding tokens trained in this call */
  tokens: number;
  seconds: number;
}

const emptyWindow = (): LogWindow => ({ lossSum: 0, microBatches: 0, tokens: 0, trainedTokens: 0 });

/** The state of a run that starts at step 0. */
export function freshState(cfg: LoopConfig, adapter: Adapter): TrainerState {
  return {
    globalStep: 0,
    totalSteps: cfg.totalSteps,
    epoch: 0,
    batchInEpoch: 0,
    dropoutRng: adapter.dropoutState(),
    seed: cfg.seed,
    logWindow: emptyWindow(),
    settings: cfg.settings,
  };
}

/** Micro-batches from `pos` on, epoch after epoch; `pos` tracks what was consumed, for checkpoints. */
async function* microBatches(
  data: BatchSource,
  pos: { epoch: number; batchInEpoch: number },
): AsyncGenerator<TrainBatch> {
  for (;;) {
    for await (const b of data.batches(pos.epoch, pos.batchInEpoch)) {
      pos.batchInEpoch++;
      yield b;
    }
    pos.epoch++;
    pos.batchInEpoch = 0;
  }
}

/** Tokens a batch trains on (labels that are not ignored) and its non-padding tokens. */
function tokenCounts(b: TrainBatch): { trained: number; tokens: number } {
  let trained = 0;
  let tokens = 0;
  for (let i = 0; i < b.labels.length; i++) {
    if (b.labels[i] >= 0) trained++;
    if (b.segments[i] !== 0) tokens++;
  }
  return { trained, tokens };
}

/** Adds `grads` into `acc` (disposing both inputs' replaced tensors). */
function accumulate(acc: NamedGrads | null, grads: NamedGrads): NamedGrads {
  if (acc === null) return grads;
  for (const k of Object.keys(grads)) {
    const sum = tf.add(acc[k], grads[k]);
    acc[k].dispose();
    grads[k].dispose();
    acc[k] = sum;
  }
  return acc;
}

/** The first adapter variable holding a NaN or an infinity, or null. */
function nonFiniteVariable(adapter: Adapter): string | null {
  for (const [key, v] of adapter.variables) {
    const bad = tf.tidy(() => tf.any(tf.logicalNot(tf.isFinite(v))).dataSync()[0]);
    if (bad) return key;
  }
  return null;
}

/**
 * Trains from `start` (a fresh state or a loaded checkpoint's) to cfg.totalSteps, or until a hook asks to stop, and
 * writes metrics.jsonl and the checkpoints; the last checkpoint is written whichever way it ends. A non-finite loss,
 * gradient norm or LoRA weight stops it with an FtError before anything of it is applied or saved.
 */
export async function trainLoop(
  model: TrainableModel,
  data: BatchSource,
  optimizer: AdamW,
  cfg: LoopConfig,
  start: TrainerState,
  hooks: LoopHooks = {},
): Promise<LoopResult> {
  const { weights, adapter } = model;
  const G = cfg.gradAccumSteps;
  if (start.globalStep > cfg.totalSteps)
    throw new FtError(`checkpoint at step ${start.globalStep} is past the run's ${cfg.totalSteps} steps`);
  if (start.batchInEpoch > data.perEpoch) {
    throw new FtError(
      `checkpoint at micro-batch ${start.batchInEpoch} of epoch ${start.epoch}, but an epoch of the data has ${data.perEpoch}: the data changed since it was written`,
    );
  }
  const params = Object.fromEntries(adapter.variables); // PEFT key -> variable
  let state: TrainerState = { ...start, totalSteps: cfg.totalSteps, settings: cfg.settings };
  const metrics = await MetricsLog.open(
    path.join(cfg.outputDir, 'metrics.jsonl'),
    start.globalStep > 0 ? start.globalStep : undefined,
  );

  const pos = { epoch: state.epoch, batchInEpoch: state.batchInEpoch };
  const batches = microBatches(data, pos);
  const epochOf = () => pos.epoch + (data.perEpoch > 0 ? pos.batchInEpoch / data.perEpoch : 0);
  const bar = progress('train', cfg.totalSteps, 'steps', ['loss', 'lr', 'tok_s']);
  const started = performance.now();
  let window = { ...emptyWindow(), ...state.logWindow }; // reset at each logging step
  let windowSince = performance.now();
  let windowTokensHere = 0; // the window's tokens trained by this call, for tokens/s
  let lastLoss: number | null = null;
  let lastEval: number | null = null;
  let lastSaved: string | null = null;
  let stepsHere = 0;
  let tokensHere = 0;

  const save = async () => {
    const bad = nonFiniteVariable(adapter);
    if (bad)
      throw new FtError(
        `step ${state.globalStep}: LoRA weight ${bad} is not finite: training diverged (lower learning_rate); nothing of it was saved${lastSaved ? `, the last good checkpoint is ${lastSaved}` : ''}`,
      );
    state = {
      ...state,
      epoch: pos.epoch,
      batchInEpoch: pos.batchInEpoch,
      dropoutRng: adapter.dropoutState(),
      logWindow: { ...window },
    };
    lastSaved = await saveCheckpoint(cfg.outputDir, state, adapter, optimizer, cfg.baseModel, cfg.saveTotalLimit);
    return lastSaved;
  };

  // gradient checkpointing recomputes layers in the backward pass: LoRA dropout is rewound so its masks repeat
  const replay = {
    save: () => adapter.dropoutState(),
    restore: (s: unknown) => adapter.setDropoutState(s as RngState),
  };
  const forwardOpts: ForwardOptions = cfg.gradientCheckpointing ? { recompute: { replay } } : {};
  adapter.setTraining(true);
  bar.update(state.globalStep);
  try {
    while (
      state.globalStep < cfg.totalSteps &&
      (hooks.stopAfterSteps === undefined || stepsHere < hooks.stopAfterSteps)
    ) {
      const lr = cfg.learningRate(state.globalStep);
      // The window's micro-batches first, so each loss can be weighted by its share of the window's trained tokens:
      // the step's gradient is that of the mean loss over every trained token of the window (transformers >= 4.46).
      const micro: TrainBatch[] = [];
      for (let g = 0; g < G; g++) micro.push((await batches.next()).value as TrainBatch);
      const counts = micro.map(tokenCounts);
      const trainedInWindow = counts.reduce((n, c) => n + c.trained, 0);
      let acc: NamedGrads | null = null;
      for (let g = 0; g < G; g++) {
        const weight = trainedInWindow > 0 ? counts[g].trained / trainedInWindow : 0;
        const { value, grads } = tf.variableGrads(
          () => tf.mul(trainingLoss(weights, micro[g], forwardOpts).loss, weight) as tf.Scalar,
          adapter.trainableVariables(),
        );
        acc = accumulate(acc, namedGrads(params, grads));
        // the micro-batch's summed token loss: its mean times its trained tokens = the weighted mean times the window's
        window.lossSum += (await value.data())[0] * trainedInWindow;
        value.dispose();
        window.microBatches++;
        window.trainedTokens += counts[g].trained;
        window.tokens += counts[g].tokens;
        windowTokensHere += counts[g].tokens;
        tokensHere += counts[g].tokens;
      }
      const clipped = clipGradNorm(acc!, cfg.maxGradNorm);
      tf.dispose(Object.values(acc!));
      const stepLoss = window.lossSum;
      if (!Number.isFinite(stepLoss) || !Number.isFinite(clipped.totalNorm)) {
        tf.dispose(Object.values(clipped.grads));
        const what = !Number.isFinite(stepLoss)
          ? `the loss is ${stepLoss}`
          : `the gradient norm is ${clipped.totalNorm}`;
        throw new FtError(
          `step ${state.globalStep + 1}: ${what}: training diverged (learning rate ${lr}; lower learning_rate); the step was not applied and nothing was saved${lastSaved ? `; the last good checkpoint is ${lastSaved}` : ''}`,
        );
      }
      optimizer.step(clipped.grads, lr);
      tf.dispose(Object.values(clipped.grads));
      state.globalStep++;
      stepsHere++;

      const step = state.globalStep;
      const record: MetricsRecord = { step, epoch: round(epochOf(), 4) };
      if (step % cfg.loggingSteps === 0 || step === cfg.totalSteps) {
        lastLoss = window.trainedTokens > 0 ? window.lossSum / window.trainedTokens : 0;
        const secs = (performance.now() - windowSince) / 1000;
        Object.assign(record, {
          loss: finite(lastLoss),
          lr,
          grad_norm: finite(clipped.totalNorm),
          tokens_per_s: round(windowTokensHere / secs, 1),
        });
        window = emptyWindow();
        windowSince = performance.now();
        windowTokensHere = 0;
      }
      if (hooks.evaluate && ((cfg.evalSteps !== undefined && step % cfg.evalSteps === 0) || step === cfg.totalSteps)) {
        adapter.setTraining(false);
        lastEval = await hooks.evaluate();
        adapter.setTraining(true);
        record.eval_loss = finite(lastEval);
      }
      if (Object.keys(record).length > 2) {
        record.elapsed_s = round((performance.now() - started) / 1000, 2);
        metrics.append(record);
      }
      bar.update(step, {
        loss: lastLoss?.toFixed(4) ?? '-',
        lr: lr.toExponential(2),
        tok_s: record.tokens_per_s ?? '-',
      });
      if (cfg.saveSteps !== undefined && step % cfg.saveSteps === 0 && step !== cfg.totalSteps) await save();
      hooks.onStep?.(step);
      // a signal is delivered by the event loop: let it run, so a stop asked for during this step is seen now
      await new Promise((resolve) => setImmediate(resolve));
      if (hooks.stopRequested?.()) break;
    }
  } finally {
    bar.stop();
    await batches.return(undefined);
  }

  const interrupted = state.globalStep < cfg.totalSteps;
  const checkpoint = lastSaved === checkpointDir(cfg.outputDir, state.globalStep) ? lastSaved : await save();
  return {
    steps: state.globalStep,
    interrupted,
    checkpoint,
    history: readMetrics(metrics.file),
    finalLoss: lastLoss,
    finalEvalLoss: lastEval,
    epochs: epochOf(),
    tokens: tokensHere,
    seconds: (performance.now() - started) / 1000,
  };
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));
const finite = (x: number) => (Number.isFinite(x) ? x : null);
