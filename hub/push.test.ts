import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { downloadFile, listFiles } from '@huggingface/hub';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LFS_SIZE_THRESHOLD, startHubServer, type HubServer } from '../test/hub-server.ts';
import { FtError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { toFtError } from './errors.ts';
import { pushToHub } from './push.ts';

const ALICE = 'hf_alice_0123456789';
const BOB = 'hf_bob_0123456789';

/** Deadlines and retries short enough for tests. */
const FAST = { timeoutMs: 300, retries: 2, backoffMs: 20 };

let hub: HubServer;
let tmp: string;
let folder: string;

/** path -> sha256 + size + mtime of every file, to prove a push leaves the folder untouched. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const ent of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!ent.isFile()) continue;
    const abs = path.join(ent.parentPath ?? (ent as unknown as { path: string }).path, ent.name);
    const st = await fsp.stat(abs);
    out[path.relative(dir, abs)] = `${createHash('sha256')
      .update(await fsp.readFile(abs))
      .digest('hex')} ${st.size} ${st.mtimeMs}`;
  }
  return out;
}

beforeAll(async () => {
  hub = await startHubServer([
    { name: 'alice', token: ALICE },
    { name: 'bob', token: BOB },
  ]);
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-push-'));
  folder = path.join(tmp, 'adapter');
  await fsp.mkdir(path.join(folder, 'logs'), { recursive: true });
  await fsp.writeFile(path.join(folder, 'README.md'), '---\nlibrary_name: peft\n---\n# tiny adapter\n');
  await fsp.writeFile(
    path.join(folder, 'adapter_config.json'),
    JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8 }),
  );
  await fsp.writeFile(path.join(folder, 'logs', 'train.jsonl'), '{"step":1,"loss":2.5}\n');
  // above the Hub's 10 MB threshold, so the client must go through the LFS batch + PUT path
  const big = new Uint32Array(Math.ceil((LFS_SIZE_THRESHOLD + 512 * 1024) / 4));
  const rng = new Rng(1);
  for (let i = 0; i < big.length; i++) big[i] = rng.nextU32();
  await fsp.writeFile(path.join(folder, 'adapter_model.safetensors'), new Uint8Array(big.buffer));
});

afterAll(async () => {
  await hub?.close();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

describe('pushToHub against a local Hub server', () => {
  it('creates the repo, uploads small files inline and the >10 MB file through LFS, and every file downloads back byte-identical', async () => {
    const before = await snapshot(folder);
    const res = await pushToHub({
      dir: folder,
      repo: 'alice/tiny-lora',
      env: { HF_TOKEN: ALICE, HF_ENDPOINT: hub.url },
      commitMessage: 'first push',
    });
    expect(res.created).toBe(true);
    expect(res.files.map((f) => f.path)).toEqual([
      'README.md',
      'adapter_config.json',
      'adapter_model.safetensors',
      'logs/train.jsonl',
    ]);
    expect(res.commitOid).toMatch(/^[0-9a-f]{40}$/);

    const stored = hub.repos.get('alice/tiny-lora')!;
    expect(stored.commits.map((c) => c.summary)).toEqual(['first push']);
    const main = stored.branches.get('main')!;
    expect(main.get('adapter_model.safetensors')!.lfsOid).toMatch(/^[0-9a-f]{64}$/);
    expect(main.get('README.md')!.lfsOid).toBeUndefined();
    expect(hub.requests.filter((r) => r.startsWith('PUT /lfs-storage/'))).toHaveLength(1);

    const listed = [];
    for await (const f of listFiles({ repo: 'alice/tiny-lora', recursive: true, hubUrl: hub.url, accessToken: ALICE }))
      listed.push(f);
    const listedFiles = listed.filter((f) => f.type === 'file');
    expect(listedFiles.map((f) => f.path).sort()).toEqual(res.files.map((f) => f.path));
    expect(listedFiles.find((f) => f.path === 'adapter_model.safetensors')!.lfs?.size).toBe(res.files[2].size);
    for (const f of listedFiles) {
      const blob = await downloadFile({ repo: 'alice/tiny-lora', path: f.path, hubUrl: hub.url, accessToken: ALICE });
      const got = Buffer.from(await blob!.arrayBuffer());
      expect(got.equals(await fsp.readFile(path.join(folder, f.path))), f.path).toBe(true);
    }
    expect(await snapshot(folder)).toEqual(before);
  });

  it('pushes again to the existing repo (409 on create is tolerated) and onto a new branch', async () => {
    const res = await pushToHub({
      dir: folder,
      repo: 'alice/tiny-lora',
      revision: 'dev',
      env: { HF_TOKEN: ALICE, HF_ENDPOINT: hub.url },
    });
    expect(res.created).toBe(false);
    expect(res.revision).toBe('dev');
    const stored = hub.repos.get('alice/tiny-lora')!;
    expect([...stored.branches.get('dev')!.keys()].sort()).toEqual(res.files.map((f) => f.path));
    // the LFS object was already on the server: no second upload
    expect(hub.requests.filter((r) => r.startsWith('PUT /lfs-storage/'))).toHaveLength(1);
  });

  it('serves HEAD on resolve with the LFS size headers, and hides a private repo from other users', async () => {
    // an LFS file: a 302 to the CDN host carrying X-Linked-Size, as huggingface.co answers
    const head = await fetch(`${hub.url}/alice/tiny-lora/resolve/main/adapter_model.safetensors`, {
      method: 'HEAD',
      headers: { Authorization: `Bearer ${ALICE}` },
      redirect: 'manual',
    });
    expect(head.status).toBe(302);
    const size = (await fsp.stat(path.join(folder, 'adapter_model.safetensors'))).size;
    expect(head.headers.get('x-linked-size')).toBe(String(size));
    const cdn = await fetch(head.headers.get('location')!, { method: 'HEAD' });
    expect(cdn.status).toBe(200);
    expect(cdn.headers.get('content-length')).toBe(String(size));

    await pushToHub({
      dir: folder,
      repo: 'alice/secret',
      private: true,
      env: { HF_TOKEN: ALICE, HF_ENDPOINT: hub.url },
    });
    expect(hub.repos.get('alice/secret')!.private).toBe(true);
    const asBob = await downloadFile({
      repo: 'alice/secret',
      path: 'README.md',
      hubUrl: hub.url,
      accessToken: BOB,
    }).catch((e: Error) => e);
    expect(String(asBob)).toMatch(/Repository not found/);
    const asAlice = await downloadFile({
      repo: 'alice/secret',
      path: 'README.md',
      hubUrl: hub.url,
      accessToken: ALICE,
    });
    expect(await asAlice!.text()).toBe(await fsp.readFile(path.join(folder, 'README.md'), 'utf8'));
  });

  it('reads the token from the token file at HF_TOKEN_PATH', async () => {
    const tokenFile = path.join(tmp, 'token');
    await fsp.writeFile(tokenFile, `${BOB}\n`);
    const res = await pushToHub({
      dir: folder,
      repo: 'bob/from-file',
      env: { HF_TOKEN_PATH: tokenFile, HF_ENDPOINT: hub.url },
    });
    expect(res.created).toBe(true);
    expect(hub.repos.get('bob/from-file')!.owner).toBe('bob');
  });

  const failures: [string, () => Promise<Record<string, string | undefined>>, string, RegExp][] = [
    [
      'no token anywhere',
      async () => ({ HF_ENDPOINT: hub.url, HF_TOKEN_PATH: path.join(tmp, 'missing-token') }),
      'alice/x',
      /no Hugging Face token: set HF_TOKEN/,
    ],
    [
      'a token the Hub rejects (401)',
      async () => ({ HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_not_a_real_token' }),
      'alice/x',
      /rejected the token from HF_TOKEN \(401/,
    ],
    [
      "a repo in another user's namespace (403)",
      async () => ({ HF_ENDPOINT: hub.url, HF_TOKEN: ALICE }),
      'bob/from-file',
      /bob\/from-file: user alice has no write access on http:\/\/127\.0\.0\.1:\d+ \(403/,
    ],
    [
      'a Hub that is not running (connection refused)',
      async () => {
        const dead = await startHubServer([]);
        await dead.close();
        return { HF_ENDPOINT: dead.url, HF_TOKEN: ALICE };
      },
      'alice/x',
      /cannot reach the Hub at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/,
    ],
    [
      'a token that is not an hf_ token',
      async () => ({ HF_ENDPOINT: hub.url, HF_TOKEN: 'abc' }),
      'alice/x',
      /token from HF_TOKEN is not a Hugging Face access token/,
    ],
  ];
  for (const [what, makeEnv, repo, message] of failures) {
    it(`fails with one clear line and leaves the folder untouched on ${what}`, async () => {
      const before = await snapshot(folder);
      const err = await pushToHub({ dir: folder, repo, env: await makeEnv(), http: FAST }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FtError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
      expect(await snapshot(folder)).toEqual(before);
    });
  }

  it('rejects a malformed repo id before any request', async () => {
    const n = hub.requests.length;
    await expect(
      pushToHub({ dir: folder, repo: 'just-a-name', env: { HF_TOKEN: ALICE, HF_ENDPOINT: hub.url } }),
    ).rejects.toThrow(/expected "namespace\/name"/);
    expect(hub.requests.length).toBe(n);
  });
});

describe('pushToHub against a Hub that misbehaves: bounded time, one line, the token never printed', () => {
  const env = () => ({ HF_TOKEN: ALICE, HF_ENDPOINT: hub.url });
  const failure = async (opts: Partial<Parameters<typeof pushToHub>[0]> = {}) => {
    const t0 = performance.now();
    const err = await pushToHub({ dir: folder, repo: 'alice/faulty', env: env(), http: FAST, ...opts }).catch(
      (e: unknown) => e,
    );
    return { err: err as Error, ms: performance.now() - t0 };
  };
  beforeEach(() => {
    hub.pushFaults.length = 0;
  });

  it('a server that never answers: stops after 2 attempts of 0.3 s', async () => {
    hub.pushFaults.push({ kind: 'hang', route: /whoami/ });
    const { err, ms } = await failure();
    hub.pushFaults.length = 0;
    expect(err).toBeInstanceOf(FtError);
    expect(err.message).toBe(
      `the Hub at ${hub.url} did not answer /api/whoami-v2 within 0.3 s (2 attempts); check the network or HF_ENDPOINT`,
    );
    expect(ms).toBeLessThan(3000);
  }, 10_000);

  it('a 200 with an HTML page (a captive portal): one line naming the endpoint and what came back', async () => {
    hub.pushFaults.push({ kind: 'html', route: /whoami/ });
    const { err } = await failure();
    hub.pushFaults.length = 0;
    expect(err).toBeInstanceOf(FtError);
    expect(err.message).toBe(
      `the Hub at ${hub.url} answered /api/whoami-v2 with 200 text/html, not JSON; is HF_ENDPOINT a Hugging Face Hub (a proxy or login page in the way)?`,
    );
  }, 10_000);

  it('a server that echoes the Authorization header in its error: the token is redacted', async () => {
    for (const route of [/repos\/create/, /preupload/, /commit/]) {
      hub.pushFaults.push({ kind: 'echo-auth', status: 400, route });
      const { err } = await failure();
      hub.pushFaults.length = 0;
      expect(err).toBeInstanceOf(FtError);
      expect(err.message).toContain('header Authorization: Bearer ***');
      expect(err.message).not.toContain(ALICE);
      expect(err.message).not.toContain('\n');
    }
  }, 20_000);

  it('an unexpected error keeps its stack but loses the token', async () => {
    const e = toFtError(new RangeError(`bad header Bearer ${ALICE}`), {
      endpoint: hub.url,
      repo: 'alice/x',
      tokenSource: 'HF_TOKEN',
      token: ALICE,
    });
    expect(e).not.toBeInstanceOf(FtError);
    expect(`${e.message}\n${e.stack}`).not.toContain(ALICE);
    expect(e.message).toBe('bad header Bearer ***');
  });

  it('a commit answered 503 once is sent again and lands once', async () => {
    hub.pushFaults.push({ kind: 'status', status: 503, route: /\/commit\//, times: 1 });
    const lines: string[] = [];
    const res = await pushToHub({
      dir: folder,
      repo: 'alice/retried',
      env: env(),
      http: FAST,
      log: (l) => lines.push(l),
    });
    expect(hub.repos.get('alice/retried')!.commits.map((c) => c.oid)).toEqual([res.commitOid]);
    expect(lines).toEqual(['ft: /api/models/alice/retried/commit/main: HTTP 503; retry 1 in 0.0 s']);
  });

  it("never uploads ft's temp folders, marker or lock", async () => {
    const dir = path.join(tmp, 'run-adapter');
    await fsp.cp(folder, dir, { recursive: true });
    await fsp.mkdir(path.join(dir, '.checkpoint-3.tmp-4242-1-abcdef'));
    await fsp.writeFile(path.join(dir, '.checkpoint-3.tmp-4242-1-abcdef', 'adapter_model.safetensors'), 'half');
    await fsp.mkdir(path.join(dir, '.adapter.old-4242-1-abcdef'));
    await fsp.writeFile(path.join(dir, '.adapter.old-4242-1-abcdef', 'x'), 'old');
    await fsp.writeFile(path.join(dir, '.ft-output'), '{"tool":"ft","kind":"adapter"}');
    await fsp.writeFile(path.join(dir, '.ft-lock'), '{"pid":1}');
    const res = await pushToHub({ dir, repo: 'alice/clean', env: env(), http: FAST });
    expect(res.files.map((f) => f.path)).toEqual([
      'README.md',
      'adapter_config.json',
      'adapter_model.safetensors',
      'logs/train.jsonl',
    ]);
  });
});
