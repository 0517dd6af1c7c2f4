// `ft train` as a user runs it: the real bin in a child process. Bad recipes fail before any model exists;
// Ctrl-C leaves a checkpoint that loads and that --resume finishes; the embedded default recipe runs end to end.
import { execFile, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPeftAdapter } from '../adapters/peft.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadCheckpoint } from '../train/checkpoint.ts';
import { readMetrics } from '../util/metrics-log.ts';
import { AdamW } from '../train/optimizer.ts';
import { adamWConfigOf, loadRecipe } from '../recipes/recipe.ts';
import { loadTrainableModel } from '../recipes/setup.ts';
import { trainCommand } from '../cli/train.ts';
import { FtError } from '../util/errors.ts';
import { COPY_DATASET, copyRows, tinyBase, writeJsonl, writeRecipe } from './train-fixtures.ts';
import { FT_BIN as FT, runFt } from './run-ft.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-train-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ft = (args: string[]) => runFt(args, { env: { PATH: process.env.PATH, HOME: tmp }, timeoutMs: 180_000 });

beforeAll(async () => {
  await tinyBase(path.join(tmp, 'tiny'));
  writeJsonl(path.join(tmp, 'copy.jsonl'), copyRows(200));
});

/**
 * `ft train` run in this process (through its command handler, as cli/main.ts calls it): the line it stops with.
 * These checks end before any tensor work, so they need no child process of their own.
 */
async function trainStops(tokens: string[], flags: Record<string, unknown> = {}): Promise<string> {
  try {
    await trainCommand.handler({ _: ['train', ...tokens], $0: 'ft', quiet: true, backend: 'auto', ...flags } as never);
    return 'no error';
  } catch (e) {
    if (e instanceof FtError) return `ft: ${e.message}\n`;
    throw e;
  }
}

describe('ft train: bad recipes fail before any model is loaded or created', () => {
  /** A valid recipe whose base model would be created at ./never-created (which no check here may make). */
  const recipeCreatingNothing = (name: string) =>
    writeRecipe(
      tmp,
      {
        base_model: './never-created',
        base_model_init: { preset: 'tiny' },
        datasets: [{ path: 'copy.jsonl' }],
        max_steps: 2,
      },
      name,
    ).file;

  it('an unknown key is named with its line, and base_model_init creates nothing', async () => {
    const file = path.join(tmp, 'bad-key.yaml');
    writeFileSync(
      file,
      [
        'base_model: ./never-created',
        'base_model_init: {preset: tiny}',
        'datasets: [{path: copy.jsonl}]',
        'lora_rr: 8',
        'max_steps: 2',
      ].join('\n'),
    );
    expect(await trainStops([file])).toBe(`ft: ${file}:4: unknown key 'lora_rr' (did you mean 'lora_r'?)\n`);
    expect(existsSync(path.join(tmp, 'never-created'))).toBe(false);
  });

  it('a bad command-line override is named as the flag', async () => {
    const file = recipeCreatingNothing('ok.yaml');
    expect(await trainStops([file, '--max_steps', 'many'])).toBe(
      `ft: --max_steps: expected a positive integer, got "many"\n`,
    );
    expect(existsSync(path.join(tmp, 'never-created'))).toBe(false);
  });

  it('a thread count that is not a whole number of at least 1 is named as the flag or the key', async () => {
    const file = recipeCreatingNothing('threads.yaml');
    expect(await trainStops([file], { threads: 0 })).toBe('ft: --threads 0: expected a whole number of at least 1\n');
    expect(await trainStops([file, '--num_threads', '1.5'])).toBe(
      'ft: --num_threads: expected a positive integer, got 1.5\n',
    );
    expect(existsSync(path.join(tmp, 'never-created'))).toBe(false);
  });

  it('--resume with no checkpoint in output_dir says so', async () => {
    const { file } = writeRecipe(
      tmp,
      {
        base_model: './tiny',
        datasets: [{ path: 'copy.jsonl', ...COPY_DATASET }],
        max_steps: 2,
        output_dir: './nothing-yet',
      },
      'noresume.yaml',
    );
    expect(await trainStops([file], { resume: true })).toBe(
      `ft: ${path.join(tmp, 'nothing-yet')}: no checkpoint-N folder to resume from\n`,
    );
  });
});

describe('ft train: SIGINT', () => {
  it('saves a loadable checkpoint after the current step and exits 130; --resume finishes the run', async () => {
    const { file, recipe } = writeRecipe(
      tmp,
      {
        base_model: './tiny',
        lora_dropout: 0.1,
        datasets: [{ path: 'copy.jsonl', ...COPY_DATASET }],
        sequence_len: 48,
        sample_packing: true,
        micro_batch_size: 2,
        max_steps: 1000, // never reached: the signal comes after step 1
        learning_rate: 1e-2,
        logging_steps: 1,
        output_dir: './sigint',
      },
      'sigint.yaml',
    );
    const metricsFile = path.join(recipe.output_dir, 'metrics.jsonl');
    const child = spawn(process.execPath, [FT, 'train', file, '--quiet'], {
      env: { PATH: process.env.PATH, HOME: tmp },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // the first logged step shows training is under way
    while (!(existsSync(metricsFile) && readFileSync(metricsFile, 'utf8').includes('"step"'))) {
      if (child.exitCode !== null) throw new Error(`ft train exited early: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // a second run on the same output_dir is refused while the first holds it
    const second = await ft(['train', file, '--quiet']);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(
      new RegExp(
        `^ft: ${recipe.output_dir}: in use by another ft train \\(pid ${child.pid}, since [-0-9T:.Z]+\\); wait for it to end or stop it\n$`,
      ),
    );
    const stepAtSignal = readMetrics(metricsFile).at(-1)!.step;
    child.kill('SIGINT');
    expect(await exited, `${stdout}\n${stderr}`).toBe(130);

    const checkpoint = stdout.trim();
    const step = Number(path.basename(checkpoint).replace('checkpoint-', ''));
    expect(path.dirname(checkpoint)).toBe(recipe.output_dir);
    // the step in progress when the signal came is finished, and no other: the metrics line of the step after the one
    // read may land between the read and the signal, so that step's successor is the latest allowed
    expect(step).toBeGreaterThanOrEqual(stepAtSignal);
    expect(step).toBeLessThanOrEqual(stepAtSignal + 2);
    expect(readMetrics(metricsFile).at(-1)!.step).toBe(step);
    expect(existsSync(path.join(recipe.output_dir, 'adapter'))).toBe(false);
    expect(readdirSync(recipe.output_dir).filter((n) => n.startsWith('.'))).toEqual(['.ft-output']); // no temp leftovers, the lock released

    // complete: a PEFT adapter, and everything loadCheckpoint restores into a fresh model
    expect((await readPeftAdapter(checkpoint)).tensors.size).toBe(2 * 2 * 4); // q_proj, v_proj (default) x A, B x 4 layers
    const model = await loadTrainableModel(recipe, recipe.base_model, file);
    const optimizer = new AdamW(Object.fromEntries(model.adapter.variables), adamWConfigOf(recipe));
    const state = await loadCheckpoint(checkpoint, model.adapter, optimizer);
    expect(state).toMatchObject({ globalStep: step, totalSteps: 1000, seed: recipe.seed });
    optimizer.dispose();
    disposeLlama(model.weights);

    // finish two steps later (a recipe key overridden on resume: the schedule follows the new length)
    const resumed = await ft(['train', file, '--resume', '--max_steps', String(step + 2), '--quiet']);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toBe(`${path.join(recipe.output_dir, 'adapter')}\n`);
    expect(readMetrics(metricsFile).map((r) => r.step)).toEqual(Array.from({ length: step + 2 }, (_, i) => i + 1));
  }, 180_000);
});

describe('ft train: the embedded default recipe', () => {
  it('runs in a copy of the repository with nothing beside it: creates its data and base model, trains, and leaves adapter + card, metrics, loss curve and eval report', async () => {
    // the clone sits in an empty folder: no ../shared, no models, runs or datasets from earlier runs
    const repo = path.resolve(path.dirname(FT), '..');
    const clone = path.join(tmp, 'empty', 'ft');
    const skip = /^(node_modules|models|runs|datasets|outputs|\.git|\.prof|bench\/results)(\/|$)/;
    cpSync(repo, clone, { recursive: true, filter: (src) => !skip.test(path.relative(repo, src)) });
    symlinkSync(path.join(repo, 'node_modules'), path.join(clone, 'node_modules'));
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const args = [
        'train',
        'recipes/alpaca-tiny.yaml',
        '--max_steps',
        '2',
        '--datasets.0.synth.rows',
        '300',
        '--datasets.0.synth.held_out',
        '12',
        '--val_set_size',
        '8',
        '--eval.max_samples',
        '2',
        '--eval.max_new_tokens',
        '4',
        '--quiet',
      ];
      execFile(
        process.execPath,
        [path.join(clone, 'cli/ft.js'), ...args],
        { cwd: clone, env: { PATH: process.env.PATH, HOME: tmp }, timeout: 180_000 },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = path.join(clone, 'runs/alpaca-tiny');
    expect(r.stdout).toBe(`${path.join(out, 'adapter')}\n`);
    expect(existsSync(path.join(clone, 'models/tiny-synth/model.safetensors'))).toBe(true);
    for (const split of ['train', 'test'])
      expect(existsSync(path.join(clone, 'datasets/synth-tasks', split, 'data-00000-of-00001.arrow')), split).toBe(
        true,
      );
    for (const f of [
      'adapter/adapter_config.json',
      'adapter/adapter_model.safetensors',
      'adapter/README.md',
      'metrics.jsonl',
      'loss.svg',
      'recipe.yaml',
      'eval/summary.json',
      'eval/report.html',
    ]) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    expect(loadRecipe(path.join(out, 'recipe.yaml')).max_steps).toBe(2);
    expect(readFileSync(path.join(out, 'eval/report.md'), 'utf8')).toMatch(/synth-tasks\/test/);
  }, 180_000);
});
