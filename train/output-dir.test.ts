// What ft train does to a reused output_dir: one run at a time, other tools' checkpoints and adapters left alone,
// what a killed run left behind cleaned up, and a folder it cannot use reported in one line.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COPY_DATASET, copyRows, tinyBase, writeJsonl, writeRecipe } from '../test/train-fixtures.ts';
import { FtError } from '../util/errors.ts';
import { LOCK_FILE } from '../util/lock.ts';
import { listCheckpoints, resumeCheckpoint } from './checkpoint.ts';
import { train } from '../recipes/train.ts';
import { claimOutputDir } from './output-dir.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-outdir-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** An HF Trainer checkpoint as transformers writes one: trainer_state.json with global_step and log_history. */
function hfCheckpoint(dir: string, step: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'trainer_state.json'),
    JSON.stringify({
      best_metric: null,
      epoch: 1.0,
      global_step: step,
      log_history: [{ loss: 2.1, step }],
      max_steps: 1000,
      train_batch_size: 8,
    }),
  );
  writeFileSync(path.join(dir, 'adapter_model.safetensors'), 'their weights');
}

/** Every file under `dir` with its bytes. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const ent of readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (ent.isFile())
      out[path.relative(dir, path.join(ent.parentPath, ent.name))] = readFileSync(
        path.join(ent.parentPath, ent.name),
        'base64',
      );
  return out;
}

describe('the output_dir lock', () => {
  it('refuses a second run on the same folder with one line naming the folder and the holder pid, and frees it on release', async () => {
    const dir = path.join(tmp, 'locked');
    const first = await claimOutputDir(dir, () => {});
    const holder = JSON.parse(readFileSync(path.join(dir, LOCK_FILE), 'utf8'));
    expect(holder).toMatchObject({ pid: process.pid, hostname: hostname() });
    expect(Number.isNaN(Date.parse(holder.started))).toBe(false);
    const err = await claimOutputDir(dir, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FtError);
    expect((err as Error).message).toBe(
      `${dir}: in use by another ft train (pid ${process.pid}, since ${holder.started}); wait for it to end or stop it`,
    );
    await first.release();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    await (await claimOutputDir(dir, () => {})).release();
  });

  it('takes over the lock of a process killed with SIGKILL', async () => {
    const dir = path.join(tmp, 'stale');
    mkdirSync(dir);
    // a real process takes the lock and is killed, so nothing of it runs to remove the file
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { lockDir } from ${JSON.stringify(path.resolve('util/lock.ts'))}; await lockDir(${JSON.stringify(dir)}, 'ft train'); console.log('locked'); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const pid = child.pid!;
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), 'utf8')).pid).toBe(pid);
    const lines: string[] = [];
    const lock = await claimOutputDir(dir, (l) => lines.push(l));
    expect(lines).toEqual([`ft: ${dir}: took over the lock of pid ${pid}, which is no longer running`]);
    await lock.release();
  });

  it('refuses a lock held on another host, saying which lock file to delete if that run is gone', async () => {
    const dir = path.join(tmp, 'remote');
    mkdirSync(dir);
    writeFileSync(
      path.join(dir, LOCK_FILE),
      JSON.stringify({ pid: 4242, hostname: 'gpu-node-7', started: '2026-01-01T00:00:00.000Z' }),
    );
    await expect(claimOutputDir(dir, () => {})).rejects.toThrow(
      `${dir}: in use by another ft train (pid 4242 on gpu-node-7; if that run is gone, delete ${path.join(dir, LOCK_FILE)}, since 2026-01-01T00:00:00.000Z); wait for it to end or stop it`,
    );
  });
});

describe('claiming a reused output_dir', () => {
  it('releases the lock when the run fails', async () => {
    mkdirSync(path.join(tmp, 'fails'));
    const { file, recipe } = writeRecipe(
      tmp,
      { base_model: './no-model-here', datasets: [{ path: 'copy.jsonl' }], max_steps: 1, output_dir: './fails' },
      'fails.yaml',
    );
    await expect(train(recipe, { recipeFile: file })).rejects.toThrow(/no such folder/);
    expect(existsSync(path.join(tmp, 'fails', LOCK_FILE))).toBe(false);
    await (await claimOutputDir(recipe.output_dir, () => {})).release();
  });

  it('removes temp folders of killed checkpoint writes and puts back an adapter/ and a checkpoint whose swap was killed', async () => {
    const dir = path.join(tmp, 'killed');
    mkdirSync(path.join(dir, '.checkpoint-4.old-999999-1-abcdef'), { recursive: true });
    writeFileSync(path.join(dir, '.checkpoint-4.old-999999-1-abcdef', 'trainer_state.json'), '{}');
    mkdirSync(path.join(dir, '.checkpoint-6.tmp-999999-1-abcdef'), { recursive: true });
    mkdirSync(path.join(dir, '.adapter.old-999999-1-abcdef'));
    writeFileSync(
      path.join(dir, '.adapter.old-999999-1-abcdef', '.ft-output'),
      JSON.stringify({ tool: 'ft', kind: 'adapter' }),
    );
    writeFileSync(path.join(dir, '.adapter.old-999999-1-abcdef', 'adapter_model.safetensors'), 'trained');
    const lines: string[] = [];
    await (await claimOutputDir(dir, (l) => lines.push(l))).release();
    expect(readFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'), 'utf8')).toBe('trained');
    expect(readdirSync(dir).sort()).toEqual(['.ft-output', 'adapter', 'checkpoint-4']);
    expect(readdirSync(path.join(dir, 'checkpoint-4'))).toEqual(['trainer_state.json']);
    expect(lines.slice(0, 2).sort()).toEqual([
      `ft: ${path.join(dir, 'adapter')}: restored from .adapter.old-999999-1-abcdef, left by a write that was killed`,
      `ft: ${path.join(dir, 'checkpoint-4')}: restored from .checkpoint-4.old-999999-1-abcdef, left by a write that was killed`,
    ]);
    expect(lines.slice(2)).toEqual([
      `ft: ${dir}: removed .checkpoint-6.tmp-999999-1-abcdef, left by a run that was killed`,
    ]);
  });

  it('refuses an adapter/ that ft did not write before the run starts, and leaves it', async () => {
    const dir = path.join(tmp, 'their-adapter');
    mkdirSync(path.join(dir, 'adapter'), { recursive: true });
    writeFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'), 'axolotl output');
    await expect(claimOutputDir(dir, () => {})).rejects.toThrow(
      `${path.join(dir, 'adapter')}: is not empty and was not written by ft (no .ft-output); move it away or set another output_dir`,
    );
    expect(readFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'), 'utf8')).toBe('axolotl output');
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
  });

  it('says in one line when output_dir is a file, or a folder it may not write', async () => {
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, 'x');
    await expect(claimOutputDir(file, () => {})).rejects.toThrow(
      new FtError(`${file}: output_dir is a file, not a folder`),
    );
    await expect(claimOutputDir(path.join(file, 'run'), () => {})).rejects.toThrow(
      new FtError(`${path.join(file, 'run')}: cannot write: a part of the path is a file, not a folder (ENOTDIR)`),
    );
    // /sys refuses new entries even to root (a chmod'ed folder would not stop root)
    await expect(claimOutputDir('/sys/ft-run', () => {})).rejects.toThrow(
      /^\/sys\/ft-run: cannot write: (operation not permitted \(EPERM\)|permission denied \(EACCES\)|read-only file system \(EROFS\))$/,
    );
  });
});

describe("ft train in an output_dir with another trainer's checkpoints", () => {
  beforeAll(async () => {
    await tinyBase(path.join(tmp, 'tiny'));
    writeJsonl(path.join(tmp, 'copy.jsonl'), copyRows(40));
  });

  it('leaves HF Trainer checkpoint-N folders alone, prunes only its own, and never resumes from theirs', async () => {
    const out = path.join(tmp, 'mixed');
    hfCheckpoint(path.join(out, 'checkpoint-500'), 500);
    hfCheckpoint(path.join(out, 'checkpoint-1000'), 1000);
    const theirs = { a: contents(path.join(out, 'checkpoint-500')), b: contents(path.join(out, 'checkpoint-1000')) };
    const fields = {
      base_model: './tiny',
      datasets: [{ path: 'copy.jsonl', ...COPY_DATASET }],
      lora_r: 2,
      lora_target_modules: ['q_proj'],
      sequence_len: 32,
      micro_batch_size: 4,
      max_steps: 3,
      save_steps: 1,
      save_total_limit: 1,
      output_dir: './mixed',
    };
    const { file, recipe } = writeRecipe(tmp, fields, 'mixed.yaml');
    await train(recipe, { recipeFile: file });
    expect(contents(path.join(out, 'checkpoint-500'))).toEqual(theirs.a);
    expect(contents(path.join(out, 'checkpoint-1000'))).toEqual(theirs.b);
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([3]);
    expect(await resumeCheckpoint(out, true)).toBe(path.join(out, 'checkpoint-3'));
    await expect(resumeCheckpoint(out, path.join(out, 'checkpoint-1000'))).rejects.toThrow(
      `${path.join(out, 'checkpoint-1000')}: not an ft checkpoint (its trainer_state.json is another trainer's); ft resumes only from checkpoints it wrote`,
    );
    // a fresh run again: ft's own earlier checkpoints go, theirs stay
    await train(recipe, { recipeFile: file });
    expect(
      readdirSync(out)
        .filter((n) => n.startsWith('checkpoint-'))
        .sort(),
    ).toEqual(['checkpoint-1000', 'checkpoint-3', 'checkpoint-500']);
    expect(existsSync(path.join(out, LOCK_FILE))).toBe(false);
  });
});
