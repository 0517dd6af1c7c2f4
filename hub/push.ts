// `ft push`: uploads a local folder (an adapter, a merged model) to a Hub model repo in one commit with
// @huggingface/hub, which asks the server per file whether it goes inline or through LFS.
// Only reads the local folder; never deletes or changes anything in it.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { commitIter, createBranch, createRepo, HubApiError, whoAmI } from '@huggingface/hub';
import { FtError } from '../util/errors.ts';
import { TEMP_NAME } from '../util/fs.ts';
import { LOCK_FILE } from '../util/lock.ts';
import { OUTPUT_MARKER } from '../util/owned-dir.ts';
import { progress } from '../util/progress.ts';
import { resolveEndpoint, resolveToken, tokenFilePath, type HubToken } from './auth.ts';
import { toFtError, type HubErrorContext } from './errors.ts';
import { HUB_RETRY, hubFetch, type RetryOptions } from './http.ts';

export interface PushOptions {
  /** Local folder to upload (its files, recursively; `.git` and `.cache` are skipped as huggingface_hub does). */
  dir: string;
  /** `namespace/name` of a model repo; created if missing. */
  repo: string;
  /** Visibility when the repo is created (an existing repo is left as it is). */
  private?: boolean;
  /** Branch to commit to; created from main when missing. Default main. */
  revision?: string;
  commitMessage?: string;
  /** Overrides token resolution (HF_TOKEN, token file). */
  token?: HubToken;
  /** Overrides HF_ENDPOINT. */
  endpoint?: string;
  env?: Record<string, string | undefined>;
  /** Deadlines and retries of every request (default HUB_RETRY). */
  http?: RetryOptions;
  /** One line of chatter, e.g. a retry (default: none). */
  log?: (line: string) => void;
}

export interface PushedFile {
  path: string; // in the repo, '/'-separated
  size: number;
}

export interface PushResult {
  repo: string;
  url: string;
  revision: string;
  commitOid: string;
  commitUrl: string;
  /** Whether this push created the repo. */
  created: boolean;
  files: PushedFile[];
  bytes: number;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;
const SKIP_DIRS = new Set(['.git', '.cache']);

/** ft's bookkeeping in a folder, never pushed: temp files and folders of writes in progress or killed, its marker, its lock. */
const isBookkeeping = (name: string) => TEMP_NAME.test(name) || name === OUTPUT_MARKER || name === LOCK_FILE;

/** Files under `dir` as repo paths, sorted; ft's bookkeeping (temp folders, marker, lock) is skipped, symlinked files followed. */
export async function listFolder(dir: string): Promise<(PushedFile & { abs: string })[]> {
  const st = await fsp.stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new FtError(`${dir}: not a folder to push`);
  const out: (PushedFile & { abs: string })[] = [];
  const walk = async (abs: string, rel: string) => {
    for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
      const a = path.join(abs, ent.name);
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (isBookkeeping(ent.name)) continue;
      const s = await fsp.stat(a);
      if (s.isDirectory()) {
        // symlinked folders are not followed (no cycles)
        if (!SKIP_DIRS.has(ent.name) && !ent.isSymbolicLink()) await walk(a, r);
      } else if (s.isFile()) {
        out.push({ path: r, size: s.size, abs: a });
      }
    }
  };
  await walk(path.resolve(dir), '');
  return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

/** Uploads `opts.dir` to `opts.repo` in one commit, creating the repo (and branch) when needed. */
export async function pushToHub(opts: PushOptions): Promise<PushResult> {
  const env = opts.env ?? process.env;
  if (!REPO_ID.test(opts.repo))
    throw new FtError(
      `--repo: expected "namespace/name" (letters, digits, '-', '_', '.'), got ${JSON.stringify(opts.repo)}`,
    );
  const files = await listFolder(opts.dir);
  if (files.length === 0) throw new FtError(`${opts.dir}: folder is empty, nothing to push`);
  const endpoint = opts.endpoint ? opts.endpoint.replace(/\/+$/, '') : resolveEndpoint(env);
  const token = opts.token ?? (await resolveToken(env));
  if (!token) {
    throw new FtError(
      `no Hugging Face token: set HF_TOKEN, or put one in ${tokenFilePath(env)} (huggingface-cli login writes it)`,
    );
  }
  const revision = opts.revision ?? 'main';
  const ctx: HubErrorContext = { endpoint, repo: opts.repo, tokenSource: token.source, token: token.token };
  const log = opts.log ?? (() => {});
  const http = {
    ...(opts.http ?? HUB_RETRY),
    onRetry: (r: { url: string; attempt: number; delayMs: number; reason: string }) =>
      log(`ft: ${new URL(r.url).pathname}: ${r.reason}; retry ${r.attempt} in ${(r.delayMs / 1000).toFixed(1)} s`),
  };
  const auth = { accessToken: token.token, hubUrl: endpoint, fetch: hubFetch(http) };

  try {
    ctx.user = (await whoAmI(auth)).name;
    let created = true;
    try {
      await createRepo({
        ...auth,
        repo: opts.repo,
        ...(opts.private !== undefined && { visibility: opts.private ? 'private' : 'public' }),
      });
    } catch (e) {
      // 409: the repo exists and we may write to its namespace (else the Hub answers 403)
      if (!(e instanceof HubApiError && e.statusCode === 409)) throw e;
      created = false;
    }
    if (revision !== 'main') {
      await createBranch({ ...auth, repo: opts.repo, branch: revision }).catch((e: unknown) => {
        if (!(e instanceof HubApiError && e.statusCode === 409)) throw e;
      });
    }

    const total = files.reduce((s, f) => s + f.size, 0);
    const bar = progress(`push ${opts.repo}`, total, 'B');
    const done = new Map<string, number>();
    const sizeOf = new Map(files.map((f) => [f.path, f.size]));
    let commit;
    try {
      const it = commitIter({
        ...auth,
        repo: opts.repo,
        branch: revision,
        title: opts.commitMessage ?? `Upload ${files.length} files with ft`,
        operations: files.map((f) => ({
          operation: 'addOrUpdate' as const,
          path: f.path,
          content: pathToFileURL(f.abs),
        })),
      });
      for (let r = await it.next(); ; r = await it.next()) {
        if (r.done) {
          commit = r.value;
          break;
        }
        const ev = r.value;
        if (ev.event === 'fileProgress' && ev.state === 'uploading') {
          done.set(ev.path, ev.progress * (sizeOf.get(ev.path) ?? 0));
          bar.update(Math.round([...done.values()].reduce((s, v) => s + v, 0)));
        }
      }
      bar.update(total);
    } finally {
      bar.stop();
    }
    if (!commit) throw new FtError(`${opts.repo}: the Hub at ${endpoint} returned no commit`);
    return {
      repo: opts.repo,
      url: `${endpoint}/${opts.repo}`,
      revision,
      commitOid: commit.commit.oid,
      commitUrl: commit.commit.url,
      created,
      files: files.map(({ path: p, size }) => ({ path: p, size })),
      bytes: total,
    };
  } catch (e) {
    throw toFtError(e, ctx);
  }
}
