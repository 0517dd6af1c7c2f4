// A repo snapshot into the Hugging Face cache: revision -> commit (model/dataset info), the tree listing at that
// commit, then the selected files that are not cached yet, several at a time, each resumable and verified.
// @huggingface/hub does the info and listing calls; its snapshotDownload is not used since it fetches every file,
// one at a time, without resume, checks or progress (see hub/transfer.ts).
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { datasetInfo, listFiles, modelInfo } from '@huggingface/hub';
import { FtError } from '../util/errors.ts';
import { fnmatchRegex } from '../util/glob.ts';
import { progressGroup } from '../util/progress.ts';
import { resolveEndpoint, resolveToken, type HubToken } from './auth.ts';
import { hubCacheDir, isOffline, RepoCache, type RepoType } from './cache.ts';
import { toFtError } from './errors.ts';
import { HubUnreachableError, repoFetch, repoUrl, type HubRequestContext } from './repo-fetch.ts';
import { fetchBlob, type RemoteFile } from './transfer.ts';

/** Where the Hub and the cache are, and how hard to try; every field defaults from the environment. */
export interface HubOptions {
  env?: Record<string, string | undefined>;
  /** overrides HF_ENDPOINT */
  endpoint?: string;
  /** overrides HF_TOKEN / the token file; null sends none */
  token?: HubToken | null;
  /** overrides $HF_HUB_CACHE / $HF_HOME/hub */
  cacheDir?: string;
  /** files downloaded at once (default 4) */
  concurrency?: number;
  /** retries of 429 / 5xx / lost connections (default 5) */
  retries?: number;
  /** first backoff delay in ms, doubling (default 1000) */
  retryBaseMs?: number;
  log?: (line: string) => void;
}

/** Picks the files to fetch from the listing; `readText` fetches a small file (a README) to decide. */
export type FileSelector = (
  files: RemoteFile[],
  readText: (file: string) => Promise<string>,
) => RemoteFile[] | Promise<RemoteFile[]>;

export interface SnapshotRequest extends HubOptions {
  repo: string;
  repoType?: RepoType;
  /** branch, tag or commit (default main) */
  revision?: string;
  /** default: every file */
  select?: FileSelector;
  /** also copy the selected files into this folder and report it as the snapshot */
  localDir?: string;
}

export interface Snapshot {
  /** snapshots/<commit> in the cache (or the local dir) */
  dir: string;
  commit: string;
  /** the selected repo paths, '/'-separated, sorted */
  files: string[];
  /** files that had to be fetched (0 on a cache hit) */
  fetched: number;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/**
 * A repo path that stays inside the folder it is joined to: no '..', no empty segment, nothing anchored (/, \, C:);
 * as huggingface_hub's _validate_relative_filename (the library's copy of it is not exported).
 */
function isSafeRepoPath(p: string): boolean {
  return (
    p.length > 0 && !/^[\\/]|^[A-Za-z]:|\\/.test(p) && p.split('/').every((s) => s !== '' && s !== '..' && s !== '.')
  );
}

/** Files whose path matches an include pattern (all when none) and no exclude pattern, fnmatch-style as huggingface_hub's allow/ignore_patterns. */
export function patternSelector(include: string[] = [], exclude: string[] = []): FileSelector {
  const inc = include.map(fnmatchRegex);
  const exc = exclude.map(fnmatchRegex);
  return (files) =>
    files.filter((f) => (inc.length === 0 || inc.some((r) => r.test(f.path))) && !exc.some((r) => r.test(f.path)));
}

/** Downloads what `req.select` picks of a repo revision into the cache (or takes it from there); the snapshot folder. */
export async function downloadSnapshot(req: SnapshotRequest): Promise<Snapshot> {
  const env = req.env ?? process.env;
  const log = req.log ?? (() => {});
  const type = req.repoType ?? 'model';
  const revision = req.revision ?? 'main';
  if (!REPO_ID.test(req.repo)) throw new FtError(`'${req.repo}': expected a Hub repo id "namespace/name"`);
  const cache = new RepoCache(req.cacheDir ?? hubCacheDir(env), type, req.repo);
  const select = req.select ?? patternSelector();
  const what = `${type === 'dataset' ? 'dataset ' : ''}${req.repo}${revision === 'main' ? '' : ` (revision ${revision})`}`;

  if (isOffline(env)) {
    const commit = cache.commitOf(revision);
    if (!commit)
      throw new FtError(
        `HF_HUB_OFFLINE=1: ${what} is not in the cache at ${cache.dir}; unset HF_HUB_OFFLINE to download it`,
      );
    return fromCache(cache, commit, select, req.localDir, `HF_HUB_OFFLINE=1: ${what}`);
  }

  const endpoint = req.endpoint?.replace(/\/+$/, '') ?? resolveEndpoint(env);
  const token = req.token !== undefined ? req.token : await resolveToken(env);
  const ctx: HubRequestContext = {
    endpoint,
    repoType: type,
    repo: req.repo,
    revision,
    tokenSource: token?.source ?? null,
    retries: req.retries ?? 5,
    retryBaseMs: req.retryBaseMs ?? 1000,
    log,
  };
  const fetch = repoFetch(ctx);
  const auth = { hubUrl: endpoint, fetch, ...(token && { accessToken: token.token }) };

  let commit: string;
  let remote: RemoteFile[];
  try {
    const info =
      type === 'dataset'
        ? await datasetInfo({ ...auth, name: req.repo, revision, additionalFields: ['sha'] })
        : await modelInfo({ ...auth, name: req.repo, revision, additionalFields: ['sha'] });
    commit = info.sha;
    remote = [];
    for await (const e of listFiles({ ...auth, repo: { type, name: req.repo }, revision: commit, recursive: true })) {
      if (e.type !== 'file') continue;
      if (!isSafeRepoPath(e.path))
        throw new FtError(
          `${what}: the repo lists a file named ${JSON.stringify(e.path)}, which would land outside the cache folder; refusing to download`,
        );
      remote.push({
        path: e.path,
        size: e.size,
        etag: e.lfs?.oid ?? e.oid ?? '',
        sha256: e.lfs?.oid,
        gitOid: e.lfs ? undefined : e.oid,
      });
    }
  } catch (e) {
    const cached = cache.commitOf(revision);
    if (e instanceof HubUnreachableError && cached) {
      log(`ft: warning: ${e.message}; using the cached snapshot ${cached.slice(0, 12)} of ${what}`);
      return fromCache(cache, cached, select, req.localDir, what);
    }
    throw toFtError(e, { endpoint, repo: req.repo, tokenSource: token?.source ?? 'no token' });
  }

  const byPath = new Map(remote.map((f) => [f.path, f]));
  const bars = progressGroup();
  const fetchOne = async (f: RemoteFile, onBytes: (delta: number) => void) => {
    const bar = bars.bar(f.path, f.size, 'B');
    let last = 0;
    try {
      await fetchBlob(f, cache.blob(f.etag), {
        url: `${endpoint}/${type === 'dataset' ? 'datasets/' : ''}${req.repo}/resolve/${commit}/${f.path.split('/').map(encodeURIComponent).join('/')}`,
        fetch,
        token: token?.token ?? null,
        ctx,
        onProgress: (bytes) => {
          onBytes(bytes - last);
          last = bytes;
          bar.update(bytes);
        },
      });
    } finally {
      bar.stop();
    }
    await cache.link(commit, f.path, f.etag);
  };
  /** Links a blob already in the cache (another snapshot had it), else fetches it. */
  const ensure = async (f: RemoteFile, onBytes: (delta: number) => void = () => {}) => {
    if (await isCached(cache.snapshot(commit), f)) return false;
    if (((await fsp.stat(cache.blob(f.etag)).catch(() => null))?.size ?? -1) === f.size)
      await cache.link(commit, f.path, f.etag);
    else await fetchOne(f, onBytes);
    return true;
  };
  const readText = async (file: string) => {
    const f = byPath.get(file);
    if (!f) throw new FtError(`${what}: no file '${file}' at ${commit.slice(0, 12)}`);
    await ensure(f);
    return fsp.readFile(path.join(cache.snapshot(commit), file), 'utf8');
  };

  let fetched = 0;
  let selected: RemoteFile[];
  try {
    selected = await select(remote, readText);
    const missing: RemoteFile[] = [];
    for (const f of selected) if (!(await isCached(cache.snapshot(commit), f))) missing.push(f);
    const total = missing.reduce((s, f) => s + f.size, 0);
    if (missing.length > 0)
      log(
        `ft: downloading ${missing.length} file(s), ${total} bytes, of ${what} from ${repoUrl(ctx)} into ${cache.dir}`,
      );
    const totalBar = missing.length > 1 ? bars.bar(`${req.repo} total`, total, 'B') : null;
    let done = 0;
    await pool(missing, req.concurrency ?? 4, async (f) => {
      if (await ensure(f, (delta) => totalBar?.update((done += delta)))) fetched++;
    });
    totalBar?.update(total);
    totalBar?.stop();
  } finally {
    bars.stop();
  }
  await fsp.mkdir(cache.snapshot(commit), { recursive: true });
  await cache.writeRef(revision, commit);
  const files = selected.map((f) => f.path).sort();
  const dir = req.localDir ? await copyTo(cache.snapshot(commit), files, req.localDir) : cache.snapshot(commit);
  return { dir, commit, files, fetched };
}

/** A snapshot already in the cache, the selection made over what it holds. */
async function fromCache(
  cache: RepoCache,
  commit: string,
  select: FileSelector,
  localDir: string | undefined,
  what: string,
): Promise<Snapshot> {
  const snap = cache.snapshot(commit);
  const held: RemoteFile[] = [];
  for (const p of await cache.snapshotFiles(commit)) {
    const full = path.join(snap, p);
    const link = await fsp.readlink(full).catch(() => null);
    held.push({ path: p, size: (await fsp.stat(full)).size, etag: link ? path.basename(link) : '' });
  }
  const readText = async (file: string) => {
    if (!held.some((f) => f.path === file))
      throw new FtError(`${what}: '${file}' is not in the cached snapshot ${snap}`);
    return fsp.readFile(path.join(snap, file), 'utf8');
  };
  const files = (await select(held, readText)).map((f) => f.path).sort();
  const dir = localDir ? await copyTo(snap, files, localDir) : snap;
  return { dir, commit, files, fetched: 0 };
}

/** Whether snapshots/<commit>/<path> resolves to a file of the listed size (a snapshot link is only made after the checks). */
async function isCached(snapshot: string, f: RemoteFile): Promise<boolean> {
  const st = await fsp.stat(path.join(snapshot, ...f.path.split('/'))).catch(() => null);
  return st?.isFile() === true && st.size === f.size;
}

/** Runs `work` over `items`, `n` at a time; after a failure starts no more and throws the first error once the running ones end. */
async function pool<T>(items: T[], n: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length && errors.length === 0) {
      const item = items[next++];
      await work(item).catch((e: unknown) => errors.push(e));
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}

/** Copies the snapshot's files into `dir` (each through a temp file); returns `dir`. */
async function copyTo(snapshot: string, files: string[], dir: string): Promise<string> {
  for (const f of files) {
    const target = path.join(dir, ...f.split('/'));
    await fsp.mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.tmp-${process.pid}`;
    await fsp.copyFile(path.join(snapshot, ...f.split('/')), tmp);
    await fsp.rename(tmp, target);
  }
  return path.resolve(dir);
}
