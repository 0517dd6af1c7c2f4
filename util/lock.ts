// An exclusive lock on a folder: a lock file holding the owner's pid, host and start time, created with link(2)
// so it appears complete or not at all. A lock whose process is gone (same host, pid not running) is stale and taken
// over; the lock file goes at release, and at process exit if release was never reached.
import { promises as fsp, readFileSync, unlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FtError } from './errors.ts';
import { tempPathFor } from './fs.ts';
import { isProcessAlive } from './pid.ts';

export const LOCK_FILE = '.ft-lock';

export interface LockHolder {
  pid: number;
  hostname: string;
  /** ISO time the holder took the lock */
  started: string;
}

export interface DirLock {
  file: string;
  /** what a stale lock said, when this one replaced it */
  replacedStale: LockHolder | null;
  release(): Promise<void>;
}

function readHolder(file: string): LockHolder | null {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
    return Number.isInteger(h.pid) && typeof h.hostname === 'string' ? h : null;
  } catch {
    return null;
  }
}

function busy(dir: string, what: string, holder: LockHolder | null, file: string): FtError {
  if (!holder)
    return new FtError(`${dir}: locked by ${file}, which names no holder; delete it if no ${what} uses the folder`);
  const where = holder.hostname === os.hostname() ? '' : ` on ${holder.hostname}; if that run is gone, delete ${file}`;
  return new FtError(
    `${dir}: in use by another ${what} (pid ${holder.pid}${where}, since ${holder.started}); wait for it to end or stop it`,
  );
}

const isOurs = (file: string) => {
  const h = readHolder(file);
  return h !== null && h.pid === process.pid && h.hostname === os.hostname();
};

/**
 * Removes the lock file if it still is the stale one read as `holder`: moved aside first (one process wins the
 * rename), and put back when another run took the lock in between.
 */
async function removeStale(file: string, holder: LockHolder | null): Promise<void> {
  const aside = tempPathFor(file, 'old');
  try {
    await fsp.rename(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // another run removed it first
    throw e;
  }
  const moved = readHolder(aside);
  if (holder && moved && (moved.pid !== holder.pid || moved.started !== holder.started))
    await fsp.link(aside, file).catch(() => {});
  await fsp.rm(aside, { force: true });
}

/**
 * Takes `dir`'s lock for `what` (e.g. "ft train"), or throws one line naming the folder and the holder's pid.
 * `dir` must exist.
 */
export async function lockDir(dir: string, what: string): Promise<DirLock> {
  const file = path.join(dir, LOCK_FILE);
  const me: LockHolder = { pid: process.pid, hostname: os.hostname(), started: new Date().toISOString() };
  const tmp = tempPathFor(file);
  await fsp.writeFile(tmp, JSON.stringify(me) + '\n');
  let replacedStale: LockHolder | null = null;
  try {
    for (;;) {
      try {
        await fsp.link(tmp, file);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = readHolder(file);
      const stale = holder === null || (holder.hostname === me.hostname && !isProcessAlive(holder.pid));
      if (!stale || replacedStale) throw busy(dir, what, holder, file);
      replacedStale = holder ?? { pid: 0, hostname: '?', started: '?' };
      await removeStale(file, holder);
    }
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  // exit without release (an error path that never reached it, process.exit): the lock still goes
  const onExit = () => {
    if (isOurs(file)) unlinkSync(file);
  };
  process.once('exit', onExit);
  return {
    file,
    replacedStale,
    async release() {
      process.off('exit', onExit);
      if (isOurs(file)) await fsp.rm(file, { force: true });
    },
  };
}
