import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ioError } from './errors.ts';
import { assertReplaceable, writeOutputMarker, type OutputKind } from './owned-dir.ts';
import { isProcessAlive } from './pid.ts';

/** Names of the sibling temp paths below: `.{name}.tmp-{pid}-{ms}-{rand}` (being written), `.{name}.old-...` (being replaced). */
export const TEMP_NAME = /^\.(.+)\.(tmp|old)-(\d+)-\d+-[0-9a-z]+$/;

/** A sibling temp path for `target`, unique per process and call; `old` names the previous content during a swap. */
export function tempPathFor(target: string, role: 'tmp' | 'old' = 'tmp'): string {
  const dir = path.dirname(target);
  return path.join(
    dir,
    `.${path.basename(target)}.${role}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
  );
}

/** Writes a file atomically: to a temp file beside it, then rename, so a reader never sees it half-written. */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathFor(target);
  try {
    await fsp.mkdir(path.dirname(target), { recursive: true });
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw ioError(e, target);
  }
}

export interface DirWriteOptions {
  /** What the folder holds; recorded in its `.ft-output` marker. */
  kind: OutputKind;
  /** Replace `target` even when ft did not write it. */
  overwrite?: boolean;
  /** How to go on when `target` is not ft's, in the refusal (default: pass --overwrite). */
  hint?: string;
}

/**
 * Builds a directory atomically: `fill` writes into a temp directory beside `target`, which then replaces `target`.
 * `target` must be absent, empty, or an ft-written folder of the same kind (see util/owned-dir.ts) unless `overwrite`.
 * The previous content is renamed aside and removed only once the new folder is in place; a writer killed between
 * the two renames leaves it aside, and the next write (or `repairDirSwap`) puts it back.
 */
export async function writeDirAtomic(
  target: string,
  fill: (tmpDir: string) => Promise<void>,
  opts: DirWriteOptions,
): Promise<void> {
  const tmp = tempPathFor(target);
  try {
    await repairDirSwap(target);
    if (!opts.overwrite) await assertReplaceable(target, opts.kind, opts.hint ?? 'pass --overwrite to replace it');
    await fsp.mkdir(path.dirname(path.resolve(target)), { recursive: true });
    await fsp.mkdir(tmp);
    await fill(tmp);
    await writeOutputMarker(tmp, opts.kind);
    const old = tempPathFor(target, 'old');
    let moved = false;
    try {
      await fsp.rename(target, old);
      moved = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    await fsp.rename(tmp, target);
    if (moved) await fsp.rm(old, { recursive: true, force: true });
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw ioError(e, target);
  }
}

/** Sibling temp paths of `target` left by processes that are gone. */
async function staleSiblings(target: string, role: 'tmp' | 'old'): Promise<string[]> {
  const dir = path.dirname(target);
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  return names
    .filter((n) => {
      const m = TEMP_NAME.exec(n);
      if (!m || m[1] !== path.basename(target) || m[2] !== role) return false;
      const pid = Number(m[3]);
      return pid !== process.pid && !isProcessAlive(pid);
    })
    .map((n) => path.join(dir, n));
}

/**
 * Finishes a folder swap a killed writer left half-done: when `target` is missing but its previous content is
 * still aside, that goes back; content aside next to a present `target` and dead writers' temp folders are removed.
 * Returns what it did, for the log.
 */
export async function repairDirSwap(target: string): Promise<string | null> {
  const olds = await staleSiblings(target, 'old');
  const tmps = await staleSiblings(target, 'tmp');
  let restored: string | null = null;
  if (olds.length > 0 && !(await exists(target))) {
    const newest = (await Promise.all(olds.map(async (p) => ({ p, t: (await fsp.stat(p)).mtimeMs })))).sort(
      (a, b) => b.t - a.t,
    )[0].p;
    await fsp.rename(newest, target);
    restored = newest;
  }
  for (const p of [...olds.filter((p) => p !== restored), ...tmps]) await fsp.rm(p, { recursive: true, force: true });
  return restored ? `${target}: restored from ${path.basename(restored)}, left by a write that was killed` : null;
}

/** repairDirSwap for every folder of `dir` that has previous content aside (`.x.old-*`); what it did, for the log. */
export async function repairDirSwaps(dir: string): Promise<string[]> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const targets = new Set(
    names
      .map((n) => TEMP_NAME.exec(n))
      .filter((m) => m !== null && m[2] === 'old')
      .map((m) => m![1]),
  );
  const done: string[] = [];
  for (const t of targets) {
    const r = await repairDirSwap(path.join(dir, t));
    if (r) done.push(r);
  }
  return done;
}

/** Removes every temp file or folder (`.x.tmp-*`, `.x.old-*`) in `dir` not made by this process; their names. Call it only while holding `dir`'s lock. */
export async function removeTempEntries(dir: string): Promise<string[]> {
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => {
    const m = TEMP_NAME.exec(n);
    return m !== null && m[2] === 'tmp' && Number(m[3]) !== process.pid;
  });
  for (const n of names) await fsp.rm(path.join(dir, n), { recursive: true, force: true });
  return names;
}

const exists = (p: string) =>
  fsp.stat(p).then(
    () => true,
    () => false,
  );

/** True for a plain file name: no folder part, not '.' or '..' (an index naming files in its own folder). */
export const isBareFileName = (name: unknown): name is string =>
  typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !/[\\/]/.test(name);
