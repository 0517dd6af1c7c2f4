// The Hugging Face cache exactly as huggingface_hub lays it out, so either tool uses what the other downloaded:
// <cache>/{models,datasets}--org--name/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/<revision>}.
import { existsSync, readFileSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getRepoFolderName } from '@huggingface/hub';
import { writeFileAtomic } from '../util/fs.ts';

export type RepoType = 'model' | 'dataset';
type Env = Record<string, string | undefined>;

const COMMIT_HASH = /^[0-9a-f]{40}$/;

/**
 * $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub, as huggingface_hub
 * resolves it (the library's getHFHubCachePath reads process.env only; callers and tests pass their own env).
 */
export function hubCacheDir(env: Env = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  return path.join(
    env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface'),
    'hub',
  );
}

/** HF_HUB_OFFLINE set to 1/ON/YES/TRUE, as huggingface_hub reads it. */
export function isOffline(env: Env = process.env): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').toUpperCase());
}

/** One repo's folder in the cache. */
export class RepoCache {
  readonly dir: string;
  constructor(
    cacheDir: string,
    readonly type: RepoType,
    readonly id: string,
  ) {
    this.dir = path.join(cacheDir, getRepoFolderName({ type, name: id }));
  }

  blob(etag: string): string {
    return path.join(this.dir, 'blobs', etag);
  }

  snapshot(commit: string): string {
    return path.join(this.dir, 'snapshots', commit);
  }

  /** The commit a revision points to in the cache: a commit hash with a snapshot, or refs/<revision>; null when unknown. */
  commitOf(revision: string): string | null {
    if (COMMIT_HASH.test(revision)) return existsSync(this.snapshot(revision)) ? revision : null;
    const ref = path.join(this.dir, 'refs', revision);
    if (!existsSync(ref)) return null;
    const commit = readFileSync(ref, 'utf8').trim();
    return existsSync(this.snapshot(commit)) ? commit : null;
  }

  /** refs/<revision> := commit (a branch or tag name; `refs/convert/parquet` nests as huggingface_hub writes it). */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    const ref = path.join(this.dir, 'refs', revision);
    const old = await fsp.readFile(ref, 'utf8').catch(() => null);
    if (old !== commit) await writeFileAtomic(ref, commit);
  }

  /**
   * snapshots/<commit>/<file> as a relative symlink to blobs/<etag>, replacing what was there through a rename
   * (not @huggingface/hub's createSymlink: it deletes the old link first, leaving a moment with no file, and logs).
   */
  async link(commit: string, file: string, etag: string): Promise<string> {
    const target = path.join(this.snapshot(commit), ...file.split('/'));
    await fsp.mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-link-${process.pid}`;
    await fsp.rm(tmp, { force: true });
    await fsp.symlink(path.relative(path.dirname(target), this.blob(etag)), tmp);
    await fsp.rename(tmp, target);
    return target;
  }

  /** Files under snapshots/<commit>, '/'-separated, sorted (what an offline run can use). */
  async snapshotFiles(commit: string): Promise<string[]> {
    const root = this.snapshot(commit);
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        const st = await fsp.stat(path.join(dir, e.name)).catch(() => null); // a dangling link is no file
        if (st?.isDirectory()) await walk(path.join(dir, e.name), r);
        else if (st?.isFile()) out.push(r);
      }
    };
    await walk(root, '');
    return out.sort();
  }
}
