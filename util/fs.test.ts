import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fsp, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FtError, ioError } from './errors.ts';
import { removeTempEntries, repairDirSwap, writeDirAtomic, writeFileAtomic } from './fs.ts';
import { OUTPUT_MARKER } from './owned-dir.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-fs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The pid of a process that has exited (what a killed writer leaves in its temp names). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

const fill = (text: string) => async (dir: string) => fsp.writeFile(path.join(dir, 'weights.bin'), text);

describe('writeDirAtomic only replaces what ft wrote', () => {
  it('writes a folder with its .ft-output marker and replaces it on the next write', async () => {
    const out = path.join(tmp, 'adapter');
    await writeDirAtomic(out, fill('one'), { kind: 'adapter' });
    expect(JSON.parse(readFileSync(path.join(out, OUTPUT_MARKER), 'utf8'))).toEqual({ tool: 'ft', kind: 'adapter' });
    await writeDirAtomic(out, fill('two'), { kind: 'adapter' });
    expect(readFileSync(path.join(out, 'weights.bin'), 'utf8')).toBe('two');
    expect((await fsp.readdir(tmp)).filter((n) => n.startsWith('.adapter'))).toEqual([]);
  });

  it('refuses a non-empty folder without the marker, naming it and --overwrite, and leaves it as it was', async () => {
    const out = path.join(tmp, 'theirs');
    await fsp.mkdir(out);
    writeFileSync(path.join(out, 'config.json'), '{"model_type":"llama"}');
    const err = await writeDirAtomic(out, fill('x'), { kind: 'model' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FtError);
    expect((err as Error).message).toBe(
      `${out}: is not empty and was not written by ft (no .ft-output); pass --overwrite to replace it`,
    );
    expect(await fsp.readdir(out)).toEqual(['config.json']);
    await writeDirAtomic(out, fill('x'), { kind: 'model', overwrite: true });
    expect(readFileSync(path.join(out, 'weights.bin'), 'utf8')).toBe('x');
  });

  it('refuses an ft folder of another kind, and a file in the way', async () => {
    const out = path.join(tmp, 'ckpt');
    await writeDirAtomic(out, fill('c'), { kind: 'checkpoint' });
    await expect(writeDirAtomic(out, fill('m'), { kind: 'model' })).rejects.toThrow(
      `${out}: holds an ft checkpoint, not an ft model; pass --overwrite to replace it`,
    );
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, 'keep');
    await expect(writeDirAtomic(file, fill('m'), { kind: 'model', hint: 'pick another folder' })).rejects.toThrow(
      `${file}: is a file, not a folder ft may replace; pick another folder`,
    );
    expect(readFileSync(file, 'utf8')).toBe('keep');
  });

  it('writes into an empty folder', async () => {
    const out = path.join(tmp, 'empty');
    await fsp.mkdir(out);
    await writeDirAtomic(out, fill('e'), { kind: 'model' });
    expect(readFileSync(path.join(out, 'weights.bin'), 'utf8')).toBe('e');
  });
});

describe('a swap killed half-way is repaired', () => {
  it('puts the previous folder back when a killed writer left it aside with no folder in place, and drops its temp folder', async () => {
    const parent = path.join(tmp, 'killed');
    const target = path.join(parent, 'adapter');
    await writeDirAtomic(target, fill('good'), { kind: 'adapter' });
    // what a writer killed between its two renames leaves: the old content aside, the new one in its temp folder
    const pid = deadPid();
    await fsp.rename(target, path.join(parent, `.adapter.old-${pid}-1-abc`));
    await fsp.mkdir(path.join(parent, `.adapter.tmp-${pid}-1-def`));
    expect(await repairDirSwap(target)).toBe(
      `${target}: restored from .adapter.old-${pid}-1-abc, left by a write that was killed`,
    );
    expect(readFileSync(path.join(target, 'weights.bin'), 'utf8')).toBe('good');
    expect((await fsp.readdir(parent)).sort()).toEqual(['adapter']);
  });

  it('leaves the temp folders of a writer that is still running', async () => {
    const parent = path.join(tmp, 'live');
    const target = path.join(parent, 'adapter');
    await fsp.mkdir(path.join(parent, `.adapter.old-${process.ppid}-1-abc`), { recursive: true });
    expect(await repairDirSwap(target)).toBe(null);
    expect(existsSync(path.join(parent, `.adapter.old-${process.ppid}-1-abc`))).toBe(true);
  });

  it('removes stale checkpoint temp folders but no other file', async () => {
    const dir = path.join(tmp, 'run');
    await fsp.mkdir(path.join(dir, '.checkpoint-4.tmp-123-1-abc'), { recursive: true });
    await fsp.mkdir(path.join(dir, 'checkpoint-2'));
    writeFileSync(path.join(dir, '.metrics.jsonl.tmp-123-1-abc'), '');
    writeFileSync(path.join(dir, '.notes'), '');
    expect((await removeTempEntries(dir)).sort()).toEqual([
      '.checkpoint-4.tmp-123-1-abc',
      '.metrics.jsonl.tmp-123-1-abc',
    ]);
    expect((await fsp.readdir(dir)).sort()).toEqual(['.notes', 'checkpoint-2']);
  });
});

describe('file system errors become one line naming the whole path', () => {
  it('maps a real ENOSPC (a write to /dev/full)', () => {
    let real: unknown;
    try {
      writeFileSync('/dev/full', 'x');
    } catch (e) {
      real = e;
    }
    expect((real as NodeJS.ErrnoException).code).toBe('ENOSPC');
    const mapped = ioError(real, 'runs/x/checkpoint-5');
    expect(mapped).toBeInstanceOf(FtError);
    expect((mapped as Error).message).toBe('runs/x/checkpoint-5: cannot write: no space left on the device (ENOSPC)');
  });

  it('names the target when a file stands where a folder should be', async () => {
    const file = path.join(tmp, 'blocker');
    writeFileSync(file, '');
    const target = path.join(file, 'sub', 'recipe.yaml');
    await expect(writeFileAtomic(target, 'x')).rejects.toThrow(
      new FtError(`${target}: cannot write: a part of the path is a file, not a folder (ENOTDIR)`),
    );
    await expect(writeDirAtomic(path.join(file, 'adapter'), fill('x'), { kind: 'adapter' })).rejects.toThrow(
      /blocker\/adapter: cannot write: a part of the path is a file, not a folder \((ENOTDIR|EEXIST)\)$/,
    );
  });

  it('passes other errors through unchanged', () => {
    const e = new TypeError('bug');
    expect(ioError(e, 'x')).toBe(e);
  });
});
