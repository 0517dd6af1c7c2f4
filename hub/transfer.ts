// One file from the Hub into blobs/<etag>: written to <blob>.incomplete, resumed with a Range request when a partial
// file is there, checked (size; sha256 for LFS files, the git blob id for others) and only then renamed into place.
// Written here because @huggingface/hub's downloadFileToCacheDir neither resumes, verifies, retries nor reports progress.
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FtError } from '../util/errors.ts';
import { networkCode } from './errors.ts';
import { retryDelay, sleep } from './http.ts';
import { retryOptionsOf, type HubRequestContext } from './repo-fetch.ts';

/** A file of a repo at one commit, as the tree listing describes it. */
export interface RemoteFile {
  path: string;
  size: number;
  /** the cache's blob name: the LFS sha256, else the git blob id (huggingface_hub's X-Linked-Etag / ETag) */
  etag: string;
  /** LFS files: the sha256 of the content */
  sha256?: string;
  /** files kept in git: sha1 of "blob <size>\0<content>" */
  gitOid?: string;
}

export interface TransferOptions {
  /** `<endpoint>/[datasets/]<repo>/resolve/<commit>/<path>` */
  url: string;
  /** repoFetch: retries 429/5xx, maps 401/403/404 */
  fetch: typeof fetch;
  token: string | null;
  ctx: HubRequestContext;
  /** bytes of this file on disk so far (resumed bytes included) */
  onProgress: (bytes: number) => void;
}

const stripEtag = (v: string | null) => v?.replace(/^W\//, '').replace(/"/g, '') ?? null;

/** Downloads `file` to `blob` (resuming `<blob>.incomplete`); throws FtError, leaving a resumable partial file on lost connections. */
export async function fetchBlob(file: RemoteFile, blob: string, opts: TransferOptions): Promise<void> {
  const incomplete = `${blob}.incomplete`;
  await fsp.mkdir(path.dirname(blob), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      await transferOnce(file, incomplete, opts);
      break;
    } catch (e) {
      const lost = e instanceof ShortBody || (!(e instanceof FtError) && networkCode(e) !== undefined);
      if (!lost) throw writeError(e, incomplete);
      if (attempt < opts.ctx.retries) {
        await sleep(retryDelay(attempt + 1, null, retryOptionsOf(opts.ctx)));
        continue;
      }
      const have = (await fsp.stat(incomplete).catch(() => null))?.size ?? 0;
      throw new FtError(
        `${opts.ctx.repo}: ${file.path}: the download broke off ${attempt + 1} times (${have} of ${file.size} bytes kept in ${incomplete}); run again to resume`,
      );
    }
  }
  await verify(file, incomplete);
  await fsp.rename(incomplete, blob).catch((e: unknown) => {
    throw writeError(e, blob);
  });
}

/** A response that ended before the file did (a body shorter than the file, or than its Content-Length). */
class ShortBody extends Error {}

async function transferOnce(file: RemoteFile, incomplete: string, opts: TransferOptions): Promise<void> {
  let have = (await fsp.stat(incomplete).catch(() => null))?.size ?? 0;
  if (have > file.size) {
    await fsp.rm(incomplete, { force: true });
    have = 0;
  }
  opts.onProgress(have);
  if (have === file.size && file.size > 0) return;
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  if (have > 0) headers.Range = `bytes=${have}-`;

  // redirects by hand, as huggingface_hub does: the Hub's answer carries X-Linked-Etag before the CDN takes over,
  // and the token goes to the Hub only (never to the CDN host the Hub redirects LFS files to)
  let url = opts.url;
  let res = await opts.fetch(url, { headers, redirect: 'manual' });
  const linked = stripEtag(res.headers.get('X-Linked-Etag') ?? res.headers.get('ETag'));
  if (linked && linked !== file.etag) {
    await res.body?.cancel();
    throw new FtError(
      `${opts.ctx.repo}: ${file.path}: the Hub serves etag ${linked}, but the tree listing says ${file.etag}; nothing was kept, try again`,
    );
  }
  for (let hops = 0; res.status >= 300 && res.status < 400 && hops < 5; hops++) {
    const next = new URL(res.headers.get('Location') ?? '', url);
    await res.body?.cancel();
    if (next.origin !== new URL(url).origin) delete headers.Authorization;
    url = next.href;
    res = await opts.fetch(url, { headers, redirect: 'manual' });
  }
  if (res.status === 416) {
    // the partial file is not a prefix the server can continue: start over
    await res.body?.cancel();
    await fsp.rm(incomplete, { force: true });
    throw new ShortBody('range not satisfiable');
  }
  if (res.status !== 200 && res.status !== 206) {
    await res.body?.cancel();
    throw new FtError(
      `${opts.ctx.repo}: ${file.path}: the Hub answered ${res.status} ${res.statusText} for ${new URL(url).origin}${new URL(url).pathname}`,
    );
  }
  if (res.status === 206) {
    const start = Number(/^bytes (\d+)-/.exec(res.headers.get('Content-Range') ?? '')?.[1]);
    if (start !== have) {
      await res.body?.cancel();
      throw new FtError(
        `${opts.ctx.repo}: ${file.path}: asked to resume at byte ${have}, the server sent from ${res.headers.get('Content-Range')}`,
      );
    }
  } else have = 0; // the server ignored the Range header: the whole file comes again

  const fh = await fsp.open(incomplete, have > 0 ? 'a' : 'w');
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await fh.write(value);
      have += value.length;
      opts.onProgress(have);
    }
  } finally {
    await fh.close();
  }
  if (have < file.size) throw new ShortBody(`${have} of ${file.size} bytes`);
}

/** Size and content hash against the listing; a mismatching file is removed (it would never resume into the right one). */
async function verify(file: RemoteFile, incomplete: string): Promise<void> {
  const size = (await fsp.stat(incomplete)).size;
  const fail = async (what: string) => {
    await fsp.rm(incomplete, { force: true });
    return new FtError(`${file.path}: downloaded ${what}; the file was removed, run again to download it anew`);
  };
  if (size !== file.size) throw await fail(`${size} bytes, expected ${file.size}`);
  if (file.sha256) {
    const got = await hashFile(incomplete, createHash('sha256'));
    if (got !== file.sha256) throw await fail(`content with sha256 ${got}, expected ${file.sha256}`);
  } else if (file.gitOid) {
    const got = await hashFile(incomplete, createHash('sha1').update(`blob ${size}\0`));
    if (got !== file.gitOid) throw await fail(`content with git blob id ${got}, expected ${file.gitOid}`);
  }
}

async function hashFile(file: string, h: ReturnType<typeof createHash>): Promise<string> {
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A failed write (disk full, no permission) as one line naming the file; other errors pass through. */
function writeError(e: unknown, file: string): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (e instanceof FtError || !code || !/^E[A-Z]+$/.test(code)) return e;
  const why =
    code === 'ENOSPC'
      ? 'no space left on the device'
      : code === 'EDQUOT'
        ? 'disk quota exceeded'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code;
  return new FtError(
    `${file}: cannot write the download (${why}); free space or fix the folder, then run again (a partial file resumes)`,
  );
}
