// Training checkpoints: everything an exact resume needs, in one folder written atomically.
//   checkpoint-{step}/adapter_config.json + adapter_model.safetensors   the LoRA factors (PEFT format, loadable as is)
//   checkpoint-{step}/optimizer.safetensors                             AdamW moments: {param}.exp_avg / {param}.exp_avg_sq
//   checkpoint-{step}/trainer_state.json                                step, data position, RNG state, per-param step counts
import { promises as fsp, existsSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { Adapter } from '../adapters/lora.ts';
import { readPeftAdapter, savePeftAdapter } from '../adapters/peft.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import { FtError } from '../util/errors.ts';
import { writeDirAtomic, writeFileAtomic } from '../util/fs.ts';
import { outputKind } from '../util/owned-dir.ts';
import type { RngState } from '../util/rng.ts';
import type { AdamW } from './optimizer.ts';
import { readOptimizerState } from './optimizer-file.ts';
import { OUTPUT_DIR_HINT } from './output-dir.ts';

export const TRAINER_STATE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
const PREFIX = 'checkpoint-';

/** Where training stands after `globalStep` optimizer steps. */
export interface TrainerState {
  globalStep: number;
  totalSteps: number;
  /** data position: the epoch being read and how many of its micro-batches were consumed */
  epoch: number;
  batchInEpoch: number;
  /** LoRA dropout stream */
  dropoutRng: RngState;
  /** recipe seed the run started with (a resume under another seed would not reproduce) */
  seed: number;
  /** the logging window open at the checkpoint, so a resumed run logs the same mean loss at the next logging step */
  logWindow: LogWindow;
  /** the settings the run trained under (recipe keys), to tell what a resume changes; absent in older checkpoints */
  settings?: Record<string, unknown>;
}

/** Sums since the last logged step; the logged loss is lossSum / trainedTokens. */
export interface LogWindow {
  /** summed token losses (each micro-batch's mean loss times its trained tokens) */
  lossSum: number;
  microBatches: number;
  /** non-padding tokens (for tokens/s) */
  tokens: number;
  /** tokens with a label, the loss's denominator */
  trainedTokens: number;
}

export function checkpointDir(outputDir: string, step: number): string {
  return path.join(outputDir, `${PREFIX}${step}`);
}

/** Saves adapter, optimizer and trainer state to checkpoint-{step}, then prunes to the newest `keep` checkpoints. */
export async function saveCheckpoint(
  outputDir: string,
  state: TrainerState,
  adapter: Adapter,
  optimizer: AdamW,
  baseModel: string | null,
  keep?: number,
): Promise<string> {
  const dir = checkpointDir(outputDir, state.globalStep);
  const opt = optimizer.exportState();
  await writeDirAtomic(
    dir,
    async (tmp) => {
      await savePeftAdapter(path.join(tmp, 'adapter'), adapter, baseModel);
      for (const f of await fsp.readdir(path.join(tmp, 'adapter')))
        await fsp.rename(path.join(tmp, 'adapter', f), path.join(tmp, f));
      await fsp.rmdir(path.join(tmp, 'adapter'));
      const entries = Object.entries(opt).flatMap(([name, s]) => [
        { name: `${name}.exp_avg`, dtype: 'F32' as const, shape: [s.m.length], data: s.m },
        { name: `${name}.exp_avg_sq`, dtype: 'F32' as const, shape: [s.v.length], data: s.v },
      ]);
      const steps = Object.fromEntries(Object.entries(opt).map(([name, s]) => [name, s.step]));
      await writeSafetensors(path.join(tmp, OPTIMIZER_FILE), entries, { format: 'pt', steps: JSON.stringify(steps) });
      await writeFileAtomic(path.join(tmp, TRAINER_STATE), JSON.stringify(state, null, 2) + '\n');
    },
    { kind: 'checkpoint', hint: OUTPUT_DIR_HINT },
  );
  if (keep !== undefined) await pruneCheckpoints(outputDir, keep);
  return dir;
}

/**
 * Whether `dir` is a complete checkpoint ft wrote: it has a trainer state, and its `.ft-output` marker says so or
 * (written before ft had markers) its trainer_state.json has ft's fields. HF Trainer's and axolotl's checkpoint-N
 * folders (trainer_state.json with global_step, log_history) are not.
 */
export async function isFtCheckpoint(dir: string): Promise<boolean> {
  if (!existsSync(path.join(dir, TRAINER_STATE))) return false;
  if ((await outputKind(dir)) === 'checkpoint') return true;
  try {
    const s = JSON.parse(await fsp.readFile(path.join(dir, TRAINER_STATE), 'utf8')) as Partial<TrainerState>;
    return (
      Number.isInteger(s.globalStep) &&
      Array.isArray(s.dropoutRng) &&
      typeof s.logWindow === 'object' &&
      !('global_step' in s)
    );
  } catch {
    return false;
  }
}

/** ft's checkpoint folders in `outputDir`, oldest first (another tool's checkpoint-N folders are not listed). */
export async function listCheckpoints(outputDir: string): Promise<{ step: number; dir: string }[]> {
  if (!existsSync(outputDir)) return [];
  const names = (await fsp.readdir(outputDir)).filter(
    (n) => n.startsWith(PREFIX) && /^\d+$/.test(n.slice(PREFIX.length)),
  );
  const ours = [];
  for (const n of names)
    if (await isFtCheckpoint(path.join(outputDir, n)))
      ours.push({ step: Number(n.slice(PREFIX.length)), dir: path.join(outputDir, n) });
  return ours.sort((a, b) => a.step - b.step);
}

/** Deletes ft's checkpoint folders in `outputDir` (a fresh run replaces an earlier ft run's; other tools' stay); returns their steps. */
export async function removeCheckpoints(outputDir: string): Promise<number[]> {
  const all = await listCheckpoints(outputDir);
  for (const c of all) await fsp.rm(c.dir, { recursive: true, force: true });
  return all.map((c) => c.step);
}

async function pruneCheckpoints(outputDir: string, keep: number): Promise<void> {
  const all = await listCheckpoints(outputDir);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) await fsp.rm(c.dir, { recursive: true, force: true });
}

/** The newest checkpoint of a run, or an error saying there is none to resume. */
export async function latestCheckpoint(outputDir: string): Promise<string> {
  const all = await listCheckpoints(outputDir);
  if (all.length === 0) throw new FtError(`${outputDir}: no checkpoint-N folder to resume from`);
  return all[all.length - 1].dir;
}

/**
 * The checkpoint a run resumes from: `true` = the newest in `outputDir`, a string = that folder, else none.
 * Checked before any model loads, so a wrong path fails at once.
 */
export async function resumeCheckpoint(
  outputDir: string,
  resume: boolean | string | undefined,
): Promise<string | null> {
  if (resume === true) return latestCheckpoint(outputDir);
  if (!resume) return null;
  if (!existsSync(path.join(resume, TRAINER_STATE)))
    throw new FtError(`${resume}: not a checkpoint folder (no ${TRAINER_STATE}) to resume from`);
  if (!(await isFtCheckpoint(resume)))
    throw new FtError(
      `${resume}: not an ft checkpoint (its ${TRAINER_STATE} is another trainer's); ft resumes only from checkpoints it wrote`,
    );
  return resume;
}

/** Restores adapter factors, optimizer moments and dropout RNG from `dir`; returns the trainer state. */
export async function loadCheckpoint(dir: string, adapter: Adapter, optimizer: AdamW): Promise<TrainerState> {
  const stateFile = path.join(dir, TRAINER_STATE);
  let state: TrainerState;
  try {
    state = JSON.parse(await fsp.readFile(stateFile, 'utf8')) as TrainerState;
  } catch (e) {
    throw new FtError(
      `${stateFile}: cannot read trainer state (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  for (const k of ['globalStep', 'totalSteps', 'epoch', 'batchInEpoch', 'seed'] as const) {
    if (!Number.isInteger(state[k]) || state[k] < 0)
      throw new FtError(`${stateFile}: field '${k}' must be a non-negative integer`);
  }
  if (!Array.isArray(state.dropoutRng) || state.dropoutRng.length !== 4)
    throw new FtError(`${stateFile}: field 'dropoutRng' must be 4 integers`);
  const w = state.logWindow;
  if (
    typeof w !== 'object' ||
    w === null ||
    ![w.lossSum, w.microBatches, w.tokens, w.trainedTokens].every(Number.isFinite)
  ) {
    throw new FtError(`${stateFile}: field 'logWindow' must hold numbers lossSum, microBatches, tokens, trainedTokens`);
  }

  const files = await readPeftAdapter(dir);
  for (const [key, v] of adapter.variables) {
    const t = files.tensors.get(key);
    if (!t || t.data.length !== v.size)
      throw new FtError(
        `${dir}: adapter tensor '${key}' is missing or has another shape than the recipe's LoRA (r=${adapter.config.r})`,
      );
    tf.tidy(() => v.assign(tf.tensor(t.data, v.shape)));
  }
  adapter.setDropoutState(state.dropoutRng);

  const optFile = path.join(dir, OPTIMIZER_FILE);
  optimizer.importState(await readOptimizerState(optFile), optFile);
  return state;
}
