// A local Hugging Face Hub for tests: a real HTTP server on 127.0.0.1 (ephemeral port) speaking exactly the
// endpoints @huggingface/hub calls for whoAmI, createRepo, createBranch, commit (preupload, LFS batch + basic PUT,
// NDJSON commit), model/dataset info, listFiles and downloadFile, with files kept in memory and Bearer tokens checked
// per user. Downloads behave as on huggingface.co: resolve/<rev>/<file> answers with X-Repo-Commit, ETag and, for LFS
// files, a 302 to a second host (the CDN, another 127.0.0.1 port, which refuses an Authorization header as presigned
// storage does) with X-Linked-Etag / X-Linked-Size; Range requests; gated repos (401/403 with X-Error-Code GatedRepo);
// and injected faults (dropped connections, short bodies, wrong content or etag, error statuses).
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubUser {
  name: string;
  token: string;
  orgs?: string[];
}

export interface StoredFile {
  bytes: Buffer;
  /** sha256 of the content when stored through LFS. */
  lfsOid?: string;
}

export interface StoredRepo {
  owner: string;
  private: boolean;
  /** gated: files are served only to these users (info and listing stay public, as on the Hub) */
  gatedFor?: string[];
  /** branch -> path -> file */
  branches: Map<string, Map<string, StoredFile>>;
  /** LFS objects uploaded (sha256 -> bytes), referenced by lfsFile commit lines. */
  lfs: Map<string, Buffer>;
  commits: { oid: string; branch: string; summary: string }[];
  /** branch -> head commit; commit -> files at it (every commit made or seeded) */
  heads: Map<string, string>;
  trees: Map<string, Map<string, StoredFile>>;
}

/** A fault injected into matching requests; `times` (default: forever) counts the requests it hits. */
export interface Fault {
  /** a substring of the request path, or of '/' + the file for body and etag faults (e.g. '/config.json', '/api/models/') */
  match: string;
  /** status: answer `status` (with X-Error-Code `errorCode`, Retry-After `retryAfter`); drop: send `afterBytes` bytes
   *  of the body and close the connection (a body shorter than its Content-Length); truncate: a complete answer whose
   *  Content-Length is only `afterBytes`; corrupt: one byte of the body changed; etag: a wrong X-Linked-Etag / ETag;
   *  slow: the CDN waits `delayMs` before answering */
  kind: 'status' | 'drop' | 'truncate' | 'corrupt' | 'etag' | 'slow';
  status?: number;
  errorCode?: string;
  retryAfter?: string;
  afterBytes?: number;
  delayMs?: number;
  times?: number;
}

/** One request as the servers saw it. */
export interface LoggedRequest {
  host: 'hub' | 'cdn';
  method: string;
  path: string;
  range?: string;
  authorized: boolean;
}

export interface HubServer {
  url: string;
  /** the second host LFS downloads are redirected to */
  cdnUrl: string;
  /** `namespace/name` -> model repo; `datasets/namespace/name` -> dataset repo */
  repos: Map<string, StoredRepo>;
  /** "METHOD /path" of every request to the Hub host, in order. */
  requests: string[];
  /** Faults to play on matching requests (see "Faults for ft push" below); tests push and clear them. */
  pushFaults: PushFault[];
  /** every request to either host, with its Range and whether it carried a token */
  log: LoggedRequest[];
  faults: Fault[];
  /** the most CDN downloads that were in progress at once */
  maxInFlight: number;
  /** Adds a repo with `files` on `branch` (default main) as one commit; returns the commit id. Binary or large files go through LFS. */
  seed(
    type: 'model' | 'dataset',
    id: string,
    files: Record<string, string | Uint8Array>,
    opts?: { branch?: string; private?: boolean; gatedFor?: string[] },
  ): string;
  close(): Promise<void>;
}

/** The Hub stores a file through LFS when its first 512 bytes look binary or it exceeds 10 MB. */
export const LFS_SIZE_THRESHOLD = 10 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode?: string,
  ) {
    super(message);
  }
}

export async function startHubServer(users: HubUser[], opts: { port?: number } = {}): Promise<HubServer> {
  const repos = new Map<string, StoredRepo>();
  const requests: string[] = [];
  const uploadKeys = new Map<string, { repo: string; oid: string; size: number }>();
  const pushFaults: PushFault[] = [];
  const log: LoggedRequest[] = [];
  const faults: Fault[] = [];
  let url = '';
  let cdnUrl = '';
  const newRepo = (owner: string, priv: boolean): StoredRepo => ({
    owner,
    private: priv,
    branches: new Map([['main', new Map()]]),
    lfs: new Map(),
    commits: [],
    heads: new Map(),
    trees: new Map(),
  });
  /** Records a commit on `branch` of `repo`: its id becomes the branch head and names the tree. */
  const commitTo = (
    id: string,
    repo: StoredRepo,
    branch: string,
    files: Map<string, StoredFile>,
    summary: string,
  ): string => {
    const oid = sha1(`${id}\n${branch}\n${repo.commits.length}\n${summary}`);
    repo.branches.set(branch, files);
    repo.commits.push({ oid, branch, summary });
    repo.heads.set(branch, oid);
    repo.trees.set(oid, files);
    return oid;
  };
  /** The first fault matching `p` (counting it down). */
  const faultFor = (p: string, kinds: Fault['kind'][]): Fault | null => {
    const f = faults.find(
      (x) => kinds.includes(x.kind) && p.includes(x.match) && (x.times === undefined || x.times > 0),
    );
    if (f && f.times !== undefined) f.times--;
    return f ?? null;
  };

  const userOf = (req: IncomingMessage): HubUser | null => {
    const auth = req.headers.authorization;
    if (!auth) return null;
    const token = /^Bearer (.+)$/.exec(auth)?.[1];
    const user = users.find((u) => u.token === token);
    if (!user) throw new HttpError(401, 'Invalid credentials in Authorization header');
    return user;
  };
  const requireUser = (req: IncomingMessage): HubUser => {
    const u = userOf(req);
    if (!u) throw new HttpError(401, 'Invalid username or password.');
    return u;
  };
  const canWrite = (u: HubUser, ns: string) => u.name === ns || (u.orgs ?? []).includes(ns);
  const repoFor = (id: string, u: HubUser | null, write: boolean): StoredRepo => {
    const repo = repos.get(id);
    // like the Hub, a private repo you cannot read is reported as missing
    if (!repo || (repo.private && !(u && canWrite(u, id.split('/')[0].replace(/^datasets\//, ''))))) {
      // the Hub answers 401 to an anonymous request for a missing (or private) repo, 404 to an authenticated one
      throw new HttpError(u ? 404 : 401, 'Repository not found', 'RepoNotFound');
    }
    if (write && !(u && canWrite(u, id.split('/')[0])))
      throw new HttpError(403, `You don't have the rights to write to ${id}`);
    return repo;
  };
  const branchOf = (repo: StoredRepo, rev: string) => {
    const b = repo.branches.get(rev) ?? repo.trees.get(rev);
    if (!b) throw new HttpError(404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    return b;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', url);
    const p = u.pathname;
    const method = req.method ?? 'GET';
    requests.push(`${method} ${p}`);
    if (playPushFault(pushFaults, `${method} ${p}`, req, res)) return;
    log.push({
      host: 'hub',
      method,
      path: p,
      ...(req.headers.range && { range: req.headers.range }),
      authorized: !!req.headers.authorization,
    });
    let m: RegExpExecArray | null;
    const statusFault = faultFor(decodeURIComponent(p), ['status']);
    if (statusFault) {
      const status = statusFault.status ?? 500;
      return json(res, status, { error: `injected ${status}` }, 'application/json', {
        ...(statusFault.errorCode && {
          'X-Error-Code': statusFault.errorCode,
          'X-Error-Message': `injected ${statusFault.errorCode}`,
        }),
        ...(statusFault.retryAfter !== undefined && { 'Retry-After': statusFault.retryAfter }),
      });
    }

    if (method === 'GET' && p === '/api/whoami-v2') {
      const user = requireUser(req);
      return json(res, 200, {
        type: 'user',
        id: sha1(user.name).slice(0, 24),
        name: user.name,
        fullname: user.name,
        email: `${user.name}@example.com`,
        emailVerified: true,
        isPro: false,
        canPay: false,
        avatarUrl: '',
        periodEnd: null,
        billingMode: 'prepaid',
        orgs: (user.orgs ?? []).map((o) => ({
          type: 'org',
          id: sha1(o).slice(0, 24),
          name: o,
          fullname: o,
          email: null,
          canPay: false,
          avatarUrl: '',
          periodEnd: null,
        })),
        auth: {
          type: 'access_token',
          accessToken: { displayName: 'test', role: 'write', createdAt: new Date(0).toISOString() },
        },
      });
    }

    if (method === 'POST' && p === '/api/repos/create') {
      const user = requireUser(req);
      const body = JSON.parse((await readBody(req)).toString('utf8'));
      if ((body.type ?? 'model') !== 'model')
        throw new HttpError(400, `repo type ${body.type} is not supported by this test server`);
      const ns = body.organization ?? user.name;
      if (!canWrite(user, ns))
        throw new HttpError(403, `You don't have the rights to create a model under the namespace "${ns}"`);
      const id = `${ns}/${body.name}`;
      if (repos.has(id)) return json(res, 409, { error: 'You already created this model repo', url: `${url}/${id}` });
      repos.set(id, newRepo(ns, body.visibility === 'private' || body.private === true));
      return json(res, 200, { url: `${url}/${id}`, name: id, id: sha1(id).slice(0, 24) });
    }

    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/branch\/([^/]+)$/.exec(p)) && method === 'POST') {
      const repo = repoFor(m[1], requireUser(req), true);
      const branch = decodeURIComponent(m[2]);
      const body = JSON.parse((await readBody(req)).toString('utf8') || '{}');
      if (repo.branches.has(branch) && !body.overwrite) return json(res, 409, { error: 'Reference already exists' });
      const from = body.emptyBranch
        ? new Map<string, StoredFile>()
        : new Map(branchOf(repo, body.startingPoint ?? 'main'));
      repo.branches.set(branch, from);
      const head = repo.heads.get(body.startingPoint ?? 'main');
      if (head && !body.emptyBranch) repo.heads.set(branch, head);
      return json(res, 200, {});
    }

    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/preupload\/([^/]+)$/.exec(p)) && method === 'POST') {
      const repo = repoFor(m[1], requireUser(req), true);
      branchOf(repo, decodeURIComponent(m[2]));
      const body = JSON.parse((await readBody(req)).toString('utf8')) as {
        files: { path: string; size: number; sample: string }[];
      };
      return json(res, 200, {
        files: body.files.map((f) => ({
          path: f.path,
          uploadMode: f.size > LFS_SIZE_THRESHOLD || Buffer.from(f.sample, 'base64').includes(0) ? 'lfs' : 'regular',
        })),
      });
    }

    if ((m = /^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(p)) && method === 'POST') {
      const id = m[1];
      const repo = repoFor(id, requireUser(req), true);
      const body = JSON.parse((await readBody(req)).toString('utf8')) as {
        operation: string;
        objects: { oid: string; size: number }[];
      };
      if (body.operation !== 'upload') throw new HttpError(400, 'only upload is supported');
      return json(
        res,
        200,
        {
          transfer: 'basic',
          objects: body.objects.map((o) => {
            if (repo.lfs.has(o.oid)) return { oid: o.oid, size: o.size };
            const key = randomBytes(12).toString('hex');
            uploadKeys.set(key, { repo: id, oid: o.oid, size: o.size });
            return {
              oid: o.oid,
              size: o.size,
              authenticated: true,
              actions: { upload: { href: `${url}/lfs-storage/${key}`, expires_in: 3600 } },
            };
          }),
        },
        'application/vnd.git-lfs+json',
      );
    }

    // the presigned storage URL the LFS batch answer points to (no Authorization, like S3)
    if ((m = /^\/lfs-storage\/([0-9a-f]+)$/.exec(p)) && method === 'PUT') {
      const up = uploadKeys.get(m[1]);
      if (!up) throw new HttpError(403, 'upload URL expired or unknown');
      const body = await readBody(req);
      if (body.length !== up.size || sha256(body) !== up.oid)
        throw new HttpError(400, `uploaded content does not match oid ${up.oid} / size ${up.size}`);
      repos.get(up.repo)!.lfs.set(up.oid, body);
      uploadKeys.delete(m[1]);
      res.writeHead(200, { ETag: `"${up.oid}"` }).end();
      return;
    }

    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/commit\/([^/]+)$/.exec(p)) && method === 'POST') {
      const id = m[1];
      const repo = repoFor(id, requireUser(req), true);
      const branchName = decodeURIComponent(m[2]);
      const next = new Map(branchOf(repo, branchName));
      const lines = (await readBody(req))
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim());
      let summary = '';
      for (const line of lines) {
        const { key, value } = JSON.parse(line);
        if (key === 'header') summary = value.summary;
        else if (key === 'file')
          next.set(value.path, { bytes: Buffer.from(value.content, value.encoding === 'base64' ? 'base64' : 'utf8') });
        else if (key === 'lfsFile') {
          const bytes = repo.lfs.get(value.oid);
          if (!bytes || bytes.length !== value.size)
            throw new HttpError(422, `LFS object ${value.oid} for ${value.path} was not uploaded`);
          next.set(value.path, { bytes, lfsOid: value.oid });
        } else if (key === 'deletedFile') next.delete(value.path);
        else throw new HttpError(400, `unknown commit operation ${key}`);
      }
      if (!summary) throw new HttpError(400, 'commit summary is required');
      const oid = commitTo(id, repo, branchName, next, summary);
      return json(res, 200, { success: true, commitOid: oid, commitUrl: `${url}/${id}/commit/${oid}`, hookOutput: '' });
    }

    // model / dataset info at a revision (branch, tag or commit), with the commit id and the file names
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(p)) && method === 'GET') {
      const id = m[2];
      const key = m[1] === 'datasets' ? `datasets/${id}` : id;
      const repo = repoFor(key, userOf(req), false);
      const rev = decodeURIComponent(m[3]);
      const files = branchOf(repo, rev === 'HEAD' ? 'main' : rev);
      const sha = repo.heads.get(rev === 'HEAD' ? 'main' : rev) ?? rev;
      return json(res, 200, {
        _id: sha1(key).slice(0, 24),
        id,
        author: id.split('/')[0],
        private: repo.private,
        gated: repo.gatedFor ? 'manual' : false,
        disabled: false,
        sha,
        lastModified: new Date(0).toISOString(),
        downloads: 0,
        likes: 0,
        tags: [],
        siblings: [...files.keys()].sort().map((rfilename) => ({ rfilename })),
      });
    }

    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/tree\/([^/]+)(\/.*)?$/.exec(p)) && method === 'GET') {
      const files = branchOf(
        repoFor(m[1] === 'datasets' ? `datasets/${m[2]}` : m[2], userOf(req), false),
        decodeURIComponent(m[3]),
      );
      const prefix = m[4] ? decodeURIComponent(m[4].slice(1)).replace(/\/$/, '') + '/' : '';
      const recursive = u.searchParams.get('recursive') === 'true';
      const entries: unknown[] = [];
      const dirs = new Set<string>();
      for (const [path, f] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
        if (!path.startsWith(prefix)) continue;
        const rest = path.slice(prefix.length).split('/');
        for (let d = 1; d < rest.length && (recursive || d === 1); d++) {
          const dir = prefix + rest.slice(0, d).join('/');
          if (!dirs.has(dir)) entries.push({ type: 'directory', path: dir, size: 0, oid: sha1(dir) });
          dirs.add(dir);
        }
        if (!recursive && rest.length > 1) continue;
        entries.push(treeEntry(path, f));
      }
      return json(res, 200, entries);
    }

    if (
      (m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p)) &&
      (method === 'GET' || method === 'HEAD')
    ) {
      const key = m[1] ? `datasets/${m[2]}` : m[2];
      const user = userOf(req);
      const repo = repoFor(key, user, false);
      const rev = decodeURIComponent(m[3]);
      const files = branchOf(repo, rev);
      const file = decodeURIComponent(m[4]);
      const f = files.get(file);
      if (!f) throw new HttpError(404, 'Entry not found', 'EntryNotFound');
      if (repo.gatedFor && !(user && repo.gatedFor.includes(user.name))) {
        const what = `${m[1] ? 'dataset' : 'model'} ${m[2]}`;
        throw user
          ? new HttpError(
              403,
              `Access to ${what} is restricted and you are not in the authorized list. Visit ${url}/${m[1] ?? ''}${m[2]} to ask for access.`,
              'GatedRepo',
            )
          : new HttpError(
              401,
              `Access to ${what} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
              'GatedRepo',
            );
      }
      const wrongEtag = faultFor(`/${file}`, ['etag']);
      const etag = `"${wrongEtag ? sha256(Buffer.from('not this file')) : (f.lfsOid ?? gitOid(f.bytes))}"`;
      const commit = repo.heads.get(rev) ?? rev;
      if (f.lfsOid) {
        // LFS content lives on the CDN: a presigned redirect, with the file's identity in X-Linked-* headers
        const pointer = treeEntry(file, f) as { oid: string };
        res.writeHead(302, {
          Location: `${cdnUrl}/lfs/${f.lfsOid}?file=${encodeURIComponent(file)}&X-Amz-Signature=${sha1(f.lfsOid + 'sig')}`,
          'X-Repo-Commit': commit,
          'X-Linked-Etag': etag,
          'X-Linked-Size': String(f.bytes.length),
          ETag: `"${pointer.oid}"`,
          'Content-Length': '0',
        });
        res.end();
        return;
      }
      return sendBody(
        req,
        res,
        f.bytes,
        { 'Content-Type': 'application/octet-stream', ETag: etag, 'X-Repo-Commit': commit },
        file,
      );
    }

    throw new HttpError(404, `no route for ${method} ${p}`);
  }

  /** A body with Range support and the injected body faults for `file`. */
  function sendBody(
    req: IncomingMessage,
    res: ServerResponse,
    bytes: Buffer,
    headers: Record<string, string>,
    file: string,
  ): void {
    Object.assign(headers, { 'Accept-Ranges': 'bytes' });
    let body = bytes;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
      if (start > end) {
        res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
        return;
      }
      body = bytes.subarray(start, end + 1);
      headers['Content-Range'] = `bytes ${start}-${end}/${bytes.length}`;
      status = 206;
    }
    const fault =
      req.method === 'GET' && body.length > 1 ? faultFor(`/${file}`, ['drop', 'truncate', 'corrupt']) : null;
    if (fault?.kind === 'corrupt') {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    if (fault?.kind === 'truncate') body = body.subarray(0, fault.afterBytes ?? body.length >> 1);
    headers['Content-Length'] = String(body.length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
    } else if (fault?.kind === 'drop') {
      // the bytes sent arrive, then the connection stalls and drops
      res.write(body.subarray(0, fault.afterBytes ?? body.length >> 1), () =>
        setTimeout(() => res.socket?.destroy(), 50),
      );
    } else res.end(body);
  }

  const onError = (res: ServerResponse) => (e: unknown) => {
    const err = e instanceof HttpError ? e : new HttpError(500, String((e as Error)?.message ?? e));
    const headers: Record<string, string> = err.errorCode
      ? { 'X-Error-Code': err.errorCode, 'X-Error-Message': err.message }
      : {};
    if (!res.headersSent) json(res, err.status, { error: err.message }, 'application/json', headers);
    else res.destroy();
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(onError(res));
  });
  // the CDN: serves LFS objects by sha256 to anyone with the (presigned) link, like S3 / CloudFront
  let inFlight = 0;
  let maxInFlight = 0;
  const cdn = createServer((req, res) => {
    const u = new URL(req.url ?? '/', cdnUrl);
    log.push({
      host: 'cdn',
      method: req.method ?? 'GET',
      path: u.pathname,
      ...(req.headers.range && { range: req.headers.range }),
      authorized: !!req.headers.authorization,
    });
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    res.on('close', () => inFlight--);
    (async () => {
      const slow = faultFor(`/${u.searchParams.get('file') ?? ''}`, ['slow']);
      if (slow) await new Promise((r) => setTimeout(r, slow.delayMs ?? 100));
      const m = /^\/lfs\/([0-9a-f]{64})$/.exec(u.pathname);
      if (!m || !u.searchParams.get('X-Amz-Signature')) throw new HttpError(403, 'AccessDenied');
      if (req.headers.authorization)
        throw new HttpError(
          400,
          'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified',
        );
      const bytes = [...repos.values()]
        .flatMap((r) => [...r.trees.values(), ...r.branches.values()])
        .flatMap((t) => [...t.values()])
        .find((f) => f.lfsOid === m[1])?.bytes;
      if (!bytes) throw new HttpError(404, 'NoSuchKey');
      sendBody(
        req,
        res,
        bytes,
        { 'Content-Type': 'application/octet-stream', ETag: `"${m[1]}"` },
        u.searchParams.get('file') ?? '',
      );
    })().catch(onError(res));
  });
  const listen = (s: ReturnType<typeof createServer>, port = 0) =>
    new Promise<string>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`));
    });
  url = await listen(server, opts.port);
  cdnUrl = await listen(cdn);
  const close = (s: ReturnType<typeof createServer>) =>
    new Promise<void>((resolve, reject) => {
      s.closeAllConnections();
      s.close((e) => (e ? reject(e) : resolve()));
    });
  return {
    url,
    cdnUrl,
    repos,
    requests,
    pushFaults,
    log,
    faults,
    get maxInFlight() {
      return maxInFlight;
    },
    seed(type, id, files, opts = {}) {
      const key = type === 'dataset' ? `datasets/${id}` : id;
      const repo = repos.get(key) ?? newRepo(id.split('/')[0], opts.private ?? false);
      if (opts.gatedFor) repo.gatedFor = opts.gatedFor;
      repos.set(key, repo);
      const tree = new Map<string, StoredFile>();
      for (const [p, content] of Object.entries(files)) {
        const bytes = Buffer.from(content);
        const lfs =
          bytes.length > LFS_SIZE_THRESHOLD ||
          bytes.subarray(0, 512).includes(0) ||
          /\.(safetensors|parquet|arrow|bin)$/.test(p);
        tree.set(p, lfs ? { bytes, lfsOid: sha256(bytes) } : { bytes });
      }
      return commitTo(key, repo, opts.branch ?? 'main', tree, `seed ${Object.keys(files).length} files`);
    },
    close: async () => {
      await close(server);
      await close(cdn);
    },
  };
}

function treeEntry(path: string, f: StoredFile) {
  if (!f.lfsOid) return { type: 'file', path, size: f.bytes.length, oid: gitOid(f.bytes) };
  const pointer = Buffer.from(
    `version https://git-lfs.github.com/spec/v1\noid sha256:${f.lfsOid}\nsize ${f.bytes.length}\n`,
  );
  return {
    type: 'file',
    path,
    size: f.bytes.length,
    oid: gitOid(pointer),
    lfs: { oid: f.lfsOid, size: f.bytes.length, pointerSize: pointer.length },
  };
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  type = 'application/json',
  extra: Record<string, string> = {},
): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(data.length), ...extra });
  res.end(data);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sha1 = (s: string | Buffer) => createHash('sha1').update(s).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Git's blob id: sha1 of "blob <size>\0<content>". */
const gitOid = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

// ---- Faults for ft push (timeouts, retries, bad answers; hub/http.ts, hub/errors.ts) ----
// Each fault matches "METHOD /path" by `route` and plays `times` times (default: every time), before any route runs.

/** What a push fault does (one per kind). */
type PushFaultKind =
  /** accept the request and never answer (a dead proxy, a hung server) */
  | { kind: 'hang' }
  /** send the headers, then stop sending the body */
  | { kind: 'stall-body' }
  /** answer with this status and a JSON error (e.g. 503 with Retry-After, to be retried) */
  | { kind: 'status'; status: number; retryAfterS?: number }
  /** answer 200 with an HTML page, as a captive portal or a proxy's login page does */
  | { kind: 'html' }
  /** answer with this status and an error message quoting the request's Authorization header */
  | { kind: 'echo-auth'; status: number };

export type PushFault = { route: RegExp; times?: number } & PushFaultKind;

/** Plays the first fault matching `route` on this request; true when it took the request over. */
function playPushFault(faults: PushFault[], route: string, req: IncomingMessage, res: ServerResponse): boolean {
  const i = faults.findIndex((f) => f.route.test(route));
  if (i < 0) return false;
  const f = faults[i];
  if (f.times !== undefined && --f.times <= 0) faults.splice(i, 1);
  req.resume(); // drain the request body so the client's upload completes
  switch (f.kind) {
    case 'hang':
      return true;
    case 'stall-body':
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
      res.write('{"name":');
      return true;
    case 'status':
      json(
        res,
        f.status,
        { error: `fault: ${f.status}` },
        'application/json',
        f.retryAfterS !== undefined ? { 'Retry-After': String(f.retryAfterS) } : {},
      );
      return true;
    case 'html': {
      const page = Buffer.from(
        '<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head><body><form>...</form></body></html>\n',
      );
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(page.length) });
      res.end(page);
      return true;
    }
    case 'echo-auth':
      json(res, f.status, {
        error: `bad request: header Authorization: ${req.headers.authorization ?? '(none)'} is not accepted here`,
      });
      return true;
  }
}
