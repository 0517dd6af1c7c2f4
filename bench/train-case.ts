// One training-benchmark measurement in its own process (so peak RSS and the wasm heap belong to it alone):
// a random model of a bench config, float or NF4 base, LoRA on every projection, timed training steps on the
// product's path (trainingLoss, tf.variableGrads, namedGrads, clipGradNorm, AdamW.step as train/loop.ts runs
// them with gradient accumulation 1), memory after every step, then KV-cache generation (3 times, the median
// kept); in a case on several threads, then rounds of one thread against all in this one process. Prints its
// figures as the last stdout line `@result {json}` for bench/train.ts.
// Run: npx tsx bench/train-case.ts <config> <float|nf4> [--backend wasm|cpu|tensorflow] [--threads N]
import * as tf from '@tensorflow/tfjs';
import { attachLora } from '../adapters/lora.ts';
import { initBackend, type BackendChoice } from '../engine/backend.ts';
import { type HeapBackend, onCallingThread } from '../engine/heap-compute.ts';
import { generate } from '../model/generate.ts';
import { randomTensors } from '../model/init.ts';
import { denseLinear } from '../model/linear.ts';
import { disposeLlama, trainingLoss } from '../model/llama.ts';
import { weightsFromTensors } from '../model/load.ts';
import { IGNORE_INDEX, type LlamaWeights, type TrainBatch } from '../model/types.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { clipGradNorm } from '../train/clip.ts';
import { AdamW, namedGrads } from '../train/optimizer.ts';
import { Rng } from '../util/rng.ts';
import { BENCH_LORA, BENCH_OPTIM, benchConfig, type BaseKind, TURNS } from './train-configs.ts';

export interface StepMemory {
  /** tf.memory() after the step: every live tensor is weights, LoRA factors or AdamW moments */
  numTensors: number;
  numBytes: number;
  rssBytes: number;
}

export interface CaseResult {
  config: string;
  base: BaseKind;
  backend: string;
  /** threads the backend computes with (tfjs-backend-wasm: its thread pool, 1 without the threaded build) */
  threads: number;
  /** GFLOP/s of one plain 512×512 @ 512×512 tf.matMul on this backend: what its best kernel reaches here */
  matmulGflops512: number;
  /** seconds of each timed step (warm-up excluded) */
  stepSeconds: number[];
  /** micro_batch × seq / median step seconds */
  tokensPerSecond: number;
  loss: number[];
  /** after each step, warm-up steps included (first entry = after the first warm-up step) */
  memory: StepMemory[];
  /** tf.profile of one extra step: the most bytes tfjs held at once during it */
  stepPeakTfBytes: number;
  /** the wasm heap at the end (it only grows); 0 on other backends */
  wasmHeapBytes: number;
  maxRssBytes: number;
  buildSeconds: number;
  prefillTokens: number;
  prefillSeconds: number;
  decodeTokensPerSecond: number;
  /** In an all-thread case on wasm: its process taking turns, one thread then all of them (BenchConfig.turns). */
  turns?: Turns;
}

/** Seconds of each turn's training step, and each turn's decode tokens/s, on one thread and on every thread. */
export interface Turns {
  stepSecondsOneThread: number[];
  stepSecondsAll: number[];
  decodeOneThread: number[];
  decodeAll: number[];
}

/** Timed generations after training; the figures are the median one's. */
const GENERATIONS = 3;

/** GFLOP/s of tf.matMul on two n×n matrices, mean of `reps` after one warm-up. */
async function matmulGflops(n: number, reps = 5): Promise<number> {
  const a = tf.randomNormal([n, n]) as tf.Tensor2D;
  const b = tf.randomNormal([n, n]) as tf.Tensor2D;
  tf.matMul(a, b).dispose();
  const start = performance.now();
  for (let i = 0; i < reps; i++) {
    const y = tf.matMul(a, b);
    await y.data();
    y.dispose();
  }
  const seconds = (performance.now() - start) / 1000 / reps;
  tf.dispose([a, b]);
  return (2 * n ** 3) / seconds / 1e9;
}

const [configName, base] = process.argv.slice(2) as [string, BaseKind];
if (!configName || (base !== 'float' && base !== 'nf4')) {
  console.error(
    'usage: npx tsx bench/train-case.ts <config> <float|nf4> [--backend wasm|cpu|tensorflow] [--threads N]',
  );
  process.exit(2);
}
const flag = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const threadsArg = flag('--threads');
const backend = await initBackend(
  (flag('--backend') ?? 'auto') as BackendChoice,
  threadsArg ? Number(threadsArg) : undefined,
);
const cfg = benchConfig(configName);
const threads = backend.threads;
const matmulGflops512 = await matmulGflops(512);

/** Random ids, labels = the next id (the last position ignored), one unpacked example per row. */
function randomBatch(rng: Rng, B: number, T: number, V: number): TrainBatch {
  const ids = Int32Array.from({ length: B * T }, () => rng.int(V));
  const labels = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) labels[i] = (i + 1) % T === 0 ? IGNORE_INDEX : ids[i + 1];
  return {
    B,
    T,
    ids,
    labels,
    segments: new Int32Array(B * T).fill(1),
    positions: Int32Array.from({ length: B * T }, (_, i) => i % T),
  };
}

const t0 = performance.now();
const entries = new Map(randomTensors(cfg.model, 0).map((e) => [e.name, e]));
const weights: LlamaWeights = await weightsFromTensors(
  cfg.model,
  async (name) => {
    const e = entries.get(name)!;
    return { shape: e.shape, data: typeof e.data === 'function' ? await e.data() : e.data };
  },
  base === 'nf4' ? quantizedLinear('nf4') : denseLinear,
);
const adapter = attachLora(weights, BENCH_LORA, 0, 'bench LoRA');
const params = Object.fromEntries(adapter.variables);
const optimizer = new AdamW(params, {
  beta1: BENCH_OPTIM.beta1,
  beta2: BENCH_OPTIM.beta2,
  eps: BENCH_OPTIM.eps,
  weightDecay: BENCH_OPTIM.weightDecay,
});
const buildSeconds = (performance.now() - t0) / 1000;
const batch = randomBatch(new Rng(1), cfg.batch, cfg.seq, cfg.model.vocabSize);

/** One optimizer step exactly as train/loop.ts takes it with gradient_accumulation_steps 1; returns the loss. */
async function trainStep(): Promise<number> {
  const { value, grads: byVarName } = tf.variableGrads(
    () => trainingLoss(weights, batch, cfg.checkpoint ? { recompute: {} } : {}).loss,
    adapter.trainableVariables(),
  );
  const grads = namedGrads(params, byVarName);
  const loss = (await value.data())[0];
  value.dispose();
  const clipped = clipGradNorm(grads, BENCH_OPTIM.maxGradNorm);
  tf.dispose(Object.values(grads));
  optimizer.step(clipped.grads, BENCH_OPTIM.lr);
  tf.dispose(Object.values(clipped.grads));
  return loss;
}

const memoryNow = (): StepMemory => {
  const m = tf.memory();
  return { numTensors: m.numTensors, numBytes: m.numBytes, rssBytes: process.memoryUsage.rss() };
};

adapter.setTraining(true);
const stepSeconds: number[] = [];
const loss: number[] = [];
const memory: StepMemory[] = [];
for (let s = 0; s < cfg.warmupSteps + cfg.timedSteps; s++) {
  const start = performance.now();
  const l = await trainStep();
  const secs = (performance.now() - start) / 1000;
  if (s >= cfg.warmupSteps) stepSeconds.push(secs);
  loss.push(l);
  memory.push(memoryNow());
  console.log(
    `${cfg.name} ${base} step ${s + 1}${s < cfg.warmupSteps ? ' (warm-up)' : ''}: ${secs.toFixed(2)} s, loss ${l.toFixed(4)}, ${memory.at(-1)!.numTensors} tensors, ${(memory.at(-1)!.numBytes / 2 ** 20).toFixed(1)} MiB tfjs, RSS ${(memory.at(-1)!.rssBytes / 2 ** 20).toFixed(0)} MiB`,
  );
}
const profile = await tf.profile(trainStep);

adapter.setTraining(false);
const prompt = Array.from({ length: 16 }, (_, i) => (i * 7919 + 3) % cfg.model.vocabSize);
// warm-up: the first tokens also compile and warm what decoding alone runs (its one-row products' kernels)
await generate(weights, [prompt], { maxNewTokens: 2 });
/** One timed generation: seconds to the first token (the prefill), and decode tokens/s after it. */
async function timedGeneration(): Promise<{ prefillSeconds: number; decodeTokensPerSecond: number }> {
  let first = 0;
  const g0 = performance.now();
  await generate(weights, [prompt], { maxNewTokens: cfg.generateTokens, onToken: () => (first ||= performance.now()) });
  const g1 = performance.now();
  return {
    prefillSeconds: (first - g0) / 1000,
    decodeTokensPerSecond: (cfg.generateTokens - 1) / ((g1 - first) / 1000),
  };
}
// the median of GENERATIONS: one generation's rate moved by a fifth between runs here
const generations: Awaited<ReturnType<typeof timedGeneration>>[] = [];
for (let g = 0; g < GENERATIONS; g++) generations.push(await timedGeneration());
generations.sort((a, b) => a.decodeTokensPerSecond - b.decodeTokensPerSecond);
const generation = generations[Math.floor(GENERATIONS / 2)];

/**
 * Rounds of [one thread, all threads] for one step, then for one generation: the pool set aside for the first of each
 * pair (engine/heap-compute.ts onCallingThread), so both figures come from the same minutes of this VM.
 */
async function takeTurns(rounds: number): Promise<Turns> {
  const oneThread = <T>(f: () => Promise<T>) => onCallingThread(tf.backend() as unknown as HeapBackend, f);
  const timed = async (f: () => Promise<unknown>) => {
    const start = performance.now();
    await f();
    return (performance.now() - start) / 1000;
  };
  const turns: Turns = { stepSecondsOneThread: [], stepSecondsAll: [], decodeOneThread: [], decodeAll: [] };
  adapter.setTraining(true);
  for (let r = 0; r < rounds; r++) {
    turns.stepSecondsOneThread.push(await oneThread(() => timed(trainStep)));
    turns.stepSecondsAll.push(await timed(trainStep));
  }
  adapter.setTraining(false);
  for (let r = 0; r < rounds; r++) {
    turns.decodeOneThread.push((await oneThread(timedGeneration)).decodeTokensPerSecond);
    turns.decodeAll.push((await timedGeneration()).decodeTokensPerSecond);
  }
  return turns;
}
const rounds = cfg.turns ?? TURNS;
const turns = threads > 1 && backend.name === 'wasm' && rounds > 0 ? await takeTurns(rounds) : undefined;

const wasmMemory =
  backend.name === 'wasm'
    ? (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.buffer.byteLength
    : 0;
const sorted = [...stepSeconds].sort((a, b) => a - b);
const median =
  sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
const result: CaseResult = {
  config: cfg.name,
  base,
  backend: backend.name,
  threads,
  matmulGflops512,
  stepSeconds,
  tokensPerSecond: (cfg.batch * cfg.seq) / median,
  loss,
  memory,
  stepPeakTfBytes: profile.peakBytes,
  wasmHeapBytes: wasmMemory ?? 0,
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
  buildSeconds,
  prefillTokens: prompt.length,
  prefillSeconds: generation.prefillSeconds,
  decodeTokensPerSecond: generation.decodeTokensPerSecond,
  turns,
};
optimizer.dispose();
disposeLlama(weights);
console.log(`@result ${JSON.stringify(result)}`);
