// A local Hugging Face Hub for tests: a real HTTP server on 127.0.0.1 (ephemeral port) speaking exactly the
// endpoints @huggingface/hub calls for whoAmI, createRepo, createBranch, commit (preupload, LFS batch + basic PUT,
// NDJSON commit), listFiles and downloadFile, with files kept in memory and Bearer tokens checked per user.
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
  /** branch -> path -> file */
  branches: Map<string, Map<string, StoredFile>>;
  /** LFS objects uploaded (sha256 -> bytes), referenced by lfsFile commit lines. */
  lfs: Map<string, Buffer>;
  commits: { oid: string; branch: string; summary: string }[];
}

export interface HubServer {
  url: string;
  /** `namespace/name` -> repo */
  repos: Map<string, StoredRepo>;
  /** "METHOD /path" of every request, in order. */
  requests: string[];
  /** Faults to play on matching requests (see "Faults for ft push" below); tests push and clear them. */
  pushFaults: PushFault[];
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

export async function startHubServer(users: HubUser[]): Promise<HubServer> {
  const repos = new Map<string, StoredRepo>();
  const requests: string[] = [];
  const uploadKeys = new Map<string, { repo: string; oid: string; size: number }>();
  const pushFaults: PushFault[] = [];
  let url = '';

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
    if (!repo || (repo.private && !(u && canWrite(u, id.split('/')[0])))) {
      throw new HttpError(404, 'Repository not found', 'RepoNotFound');
    }
    if (write && !(u && canWrite(u, id.split('/')[0]))) throw new HttpError(403, `You don't have the rights to write to ${id}`);
    return repo;
  };
  const branchOf = (repo: StoredRepo, rev: string) => {
    const b = repo.branches.get(rev);
    if (!b) throw new HttpError(404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
    return b;
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', url);
    const p = u.pathname;
    const method = req.method ?? 'GET';
    requests.push(`${method} ${p}`);
    if (playPushFault(pushFaults, `${method} ${p}`, req, res)) return;
    let m: RegExpExecArray | null;

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
        orgs: (user.orgs ?? []).map((o) => ({ type: 'org', id: sha1(o).slice(0, 24), name: o, fullname: o, email: null, canPay: false, avatarUrl: '', periodEnd: null })),
        auth: { type: 'access_token', accessToken: { displayName: 'test', role: 'write', createdAt: new Date(0).toISOString() } },
      });
    }

    if (method === 'POST' && p === '/api/repos/create') {
      const user = requireUser(req);
      const body = JSON.parse((await readBody(req)).toString('utf8'));
      if ((body.type ?? 'model') !== 'model') throw new HttpError(400, `repo type ${body.type} is not supported by this test server`);
      const ns = body.organization ?? user.name;
      if (!canWrite(user, ns)) throw new HttpError(403, `You don't have the rights to create a model under the namespace "${ns}"`);
      const id = `${ns}/${body.name}`;
      if (repos.has(id)) return json(res, 409, { error: 'You already created this model repo', url: `${url}/${id}` });
      repos.set(id, { owner: ns, private: body.visibility === 'private' || body.private === true, branches: new Map([['main', new Map()]]), lfs: new Map(), commits: [] });
      return json(res, 200, { url: `${url}/${id}`, name: id, id: sha1(id).slice(0, 24) });
    }

    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/branch\/([^/]+)$/.exec(p)) && method === 'POST') {
      const repo = repoFor(m[1], requireUser(req), true);
      const branch = decodeURIComponent(m[2]);
      const body = JSON.parse((await readBody(req)).toString('utf8') || '{}');
      if (repo.branches.has(branch) && !body.overwrite) return json(res, 409, { error: 'Reference already exists' });
      const from = body.emptyBranch ? new Map<string, StoredFile>() : new Map(branchOf(repo, body.startingPoint ?? 'main'));
      repo.branches.set(branch, from);
      return json(res, 200, {});
    }

    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/preupload\/([^/]+)$/.exec(p)) && method === 'POST') {
      const repo = repoFor(m[1], requireUser(req), true);
      branchOf(repo, decodeURIComponent(m[2]));
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { files: { path: string; size: number; sample: string }[] };
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
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { operation: string; objects: { oid: string; size: number }[] };
      if (body.operation !== 'upload') throw new HttpError(400, 'only upload is supported');
      return json(res, 200, {
        transfer: 'basic',
        objects: body.objects.map((o) => {
          if (repo.lfs.has(o.oid)) return { oid: o.oid, size: o.size };
          const key = randomBytes(12).toString('hex');
          uploadKeys.set(key, { repo: id, oid: o.oid, size: o.size });
          return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${url}/lfs-storage/${key}`, expires_in: 3600 } } };
        }),
      }, 'application/vnd.git-lfs+json');
    }

    // the presigned storage URL the LFS batch answer points to (no Authorization, like S3)
    if ((m = /^\/lfs-storage\/([0-9a-f]+)$/.exec(p)) && method === 'PUT') {
      const up = uploadKeys.get(m[1]);
      if (!up) throw new HttpError(403, 'upload URL expired or unknown');
      const body = await readBody(req);
      if (body.length !== up.size || sha256(body) !== up.oid) throw new HttpError(400, `uploaded content does not match oid ${up.oid} / size ${up.size}`);
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
      const lines = (await readBody(req)).toString('utf8').split('\n').filter((l) => l.trim());
      let summary = '';
      for (const line of lines) {
        const { key, value } = JSON.parse(line);
        if (key === 'header') summary = value.summary;
        else if (key === 'file') next.set(value.path, { bytes: Buffer.from(value.content, value.encoding === 'base64' ? 'base64' : 'utf8') });
        else if (key === 'lfsFile') {
          const bytes = repo.lfs.get(value.oid);
          if (!bytes || bytes.length !== value.size) throw new HttpError(422, `LFS object ${value.oid} for ${value.path} was not uploaded`);
          next.set(value.path, { bytes, lfsOid: value.oid });
        } else if (key === 'deletedFile') next.delete(value.path);
        else throw new HttpError(400, `unknown commit operation ${key}`);
      }
      if (!summary) throw new HttpError(400, 'commit summary is required');
      repo.branches.set(branchName, next);
      const oid = sha1(`${id}\n${branchName}\n${repo.commits.length}\n${summary}`);
      repo.commits.push({ oid, branch: branchName, summary });
      return json(res, 200, { success: true, commitOid: oid, commitUrl: `${url}/${id}/commit/${oid}`, hookOutput: '' });
    }

    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(\/.*)?$/.exec(p)) && method === 'GET') {
      const files = branchOf(repoFor(m[1], userOf(req), false), decodeURIComponent(m[2]));
      const prefix = m[3] ? decodeURIComponent(m[3].slice(1)).replace(/\/$/, '') + '/' : '';
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

    if ((m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p)) && (method === 'GET' || method === 'HEAD')) {
      const files = branchOf(repoFor(m[1], userOf(req), false), decodeURIComponent(m[2]));
      const f = files.get(decodeURIComponent(m[3]));
      if (!f) throw new HttpError(404, 'Entry not found', 'EntryNotFound');
      const etag = `"${f.lfsOid ?? gitOid(f.bytes)}"`;
      const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: etag };
      if (f.lfsOid) Object.assign(headers, { 'X-Linked-Size': String(f.bytes.length), 'X-Linked-ETag': etag });
      let body = f.bytes;
      let status = 200;
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]), f.bytes.length - 1) : f.bytes.length - 1;
        if (start > end) {
          res.writeHead(416, { 'Content-Range': `bytes */${f.bytes.length}` }).end();
          return;
        }
        body = f.bytes.subarray(start, end + 1);
        headers['Content-Range'] = `bytes ${start}-${end}/${f.bytes.length}`;
        status = 206;
      }
      headers['Content-Length'] = String(body.length);
      res.writeHead(status, headers);
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }

    throw new HttpError(404, `no route for ${method} ${p}`);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const err = e instanceof HttpError ? e : new HttpError(500, String((e as Error)?.message ?? e));
      const headers: Record<string, string> = err.errorCode ? { 'X-Error-Code': err.errorCode, 'X-Error-Message': err.message } : {};
      if (!res.headersSent) json(res, err.status, { error: err.message }, 'application/json', headers);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    repos,
    requests,
    pushFaults,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

function treeEntry(path: string, f: StoredFile) {
  if (!f.lfsOid) return { type: 'file', path, size: f.bytes.length, oid: gitOid(f.bytes) };
  const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.lfsOid}\nsize ${f.bytes.length}\n`);
  return { type: 'file', path, size: f.bytes.length, oid: gitOid(pointer), lfs: { oid: f.lfsOid, size: f.bytes.length, pointerSize: pointer.length } };
}

function json(res: ServerResponse, status: number, body: unknown, type = 'application/json', extra: Record<string, string> = {}): void {
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

export type PushFault = { route: RegExp; times?: number } & (
  /** accept the request and never answer (a dead proxy, a hung server) */
  | { kind: 'hang' }
  /** send the headers, then stop sending the body */
  | { kind: 'stall-body' }
  /** answer with this status and a JSON error (e.g. 503 with Retry-After, to be retried) */
  | { kind: 'status'; status: number; retryAfterS?: number }
  /** answer 200 with an HTML page, as a captive portal or a proxy's login page does */
  | { kind: 'html' }
  /** answer with this status and an error message quoting the request's Authorization header */
  | { kind: 'echo-auth'; status: number }
);

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
      json(res, f.status, { error: `fault: ${f.status}` }, 'application/json', f.retryAfterS !== undefined ? { 'Retry-After': String(f.retryAfterS) } : {});
      return true;
    case 'html': {
      const page = Buffer.from('<!DOCTYPE html>\n<html><head><title>Sign in to the network</title></head><body><form>...</form></body></html>\n');
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(page.length) });
      res.end(page);
      return true;
    }
    case 'echo-auth':
      json(res, f.status, { error: `bad request: header Authorization: ${req.headers.authorization ?? '(none)'} is not accepted here` });
      return true;
  }
}
