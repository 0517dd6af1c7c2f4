// Forward-pass and generation throughput on the tiny model (`ft init-model` preset), printed as figures.
// Run: npx tsx bench/generate.ts [--backend wasm|cpu|tensorflow]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { initBackend, type BackendChoice } from '../engine/backend.ts';
import { generate, leftPaddedBatch } from '../model/generate.ts';
import { initModel } from '../model/init.ts';
import { disposeLlama, forward } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { Rng } from '../util/rng.ts';

const backendArg = process.argv.indexOf('--backend');
const backend = await initBackend((backendArg > 0 ? process.argv[backendArg + 1] : 'auto') as BackendChoice);
const dir = await mkdtemp(path.join(tmpdir(), 'ft-bench-'));
await initModel(path.join(dir, 'tiny'), { corpus: ['a tiny corpus for the benchmark tokenizer'], seed: 0 });
const w = await loadLlama(path.join(dir, 'tiny'));
const rng = new Rng(0);
const V = w.config.vocabSize;
const prompts = (B: number, T: number) => Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(V)));

/** Seconds per call of `f`, after one warm-up call. */
async function timeIt(f: () => Promise<unknown> | unknown, reps: number): Promise<number> {
  await f();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await f();
  return (performance.now() - t0) / 1000 / reps;
}

console.log(
  `backend ${backend.name}; model ${w.config.numHiddenLayers} layers, hidden ${w.config.hiddenSize}, vocab ${V}`,
);
for (const [B, T] of [
  [1, 128],
  [8, 128],
  [4, 512],
]) {
  const batch = leftPaddedBatch(prompts(B, T));
  const s = await timeIt(async () => {
    const logits = forward(w, batch);
    await logits.data();
    logits.dispose();
  }, 3);
  console.log(`forward      B=${B} T=${T}: ${((B * T) / s).toFixed(0)} tokens/s (${(s * 1000).toFixed(0)} ms)`);
}
for (const B of [1, 8]) {
  const n = 64;
  const p = prompts(B, 16);
  let first = 0;
  const t0 = performance.now();
  await generate(w, p, { maxNewTokens: n, onToken: () => (first ||= performance.now()) });
  const t1 = performance.now();
  console.log(
    `generate     B=${B}: prefill 16 tokens ${(first - t0).toFixed(0)} ms; decode ${((B * (n - 1)) / ((t1 - first) / 1000)).toFixed(1)} tokens/s (${((t1 - first) / (n - 1)).toFixed(1)} ms/step)`,
  );
}
disposeLlama(w);
await rm(dir, { recursive: true, force: true });
