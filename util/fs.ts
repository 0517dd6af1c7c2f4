import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** A sibling temp path for `target`, unique per process and call. */
export function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  return path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
}

/** Writes a file atomically: to a temp file beside it, then rename, so a reader never sees it half-written. */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Builds a directory atomically: `fill` writes into a temp directory beside `target`,
 * which then replaces `target` (any previous content of `target` is removed only after `fill` succeeded).
 */
export async function writeDirAtomic(target: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  await fsp.mkdir(path.dirname(path.resolve(target)), { recursive: true });
  const tmp = tempPathFor(target);
  await fsp.mkdir(tmp);
  try {
    await fill(tmp);
    const old = tempPathFor(target);
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
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** True for a plain file name: no folder part, not '.' or '..' (an index naming files in its own folder). */
export const isBareFileName = (name: unknown): name is string => typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !/[\\/]/.test(name);
