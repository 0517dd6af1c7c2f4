// Downloads against the local Hub (test/hub-server.ts: real HTTP, a CDN host for LFS, injected faults), checked
// against what huggingface_hub writes: its cache layout, blob names = sha256 (LFS) or git's blob id (`git hash-object`).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readConfig } from '../model/config.ts';
import { alpacaRows, tinyModelRepo } from '../test/hub-fixtures.ts';
import { startHubServer, type HubServer } from '../test/hub-server.ts';
import { downloadSnapshot, patternSelector, type HubOptions } from './download.ts';
import { downloadModel } from './model.ts';

const TOKEN = 'hf_alice_secret_token_value';
const tmp = mkdtempSync(path.join(tmpdir(), 'ft-hubdl-'));
let hub: HubServer;
let files: Record<string, Buffer>;
let commit: string;
let cache: string;
let n = 0;
const opts = (extra: HubOptions = {}): HubOptions => ({
  env: {},
  endpoint: hub.url,
  cacheDir: cache,
  token: null,
  retries: 0,
  retryBaseMs: 1,
  ...extra,
});
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** git's own blob id for the bytes, from the git CLI (an outside reference for the non-LFS etag). */
const gitHashObject = (b: Buffer) => execFileSync('git', ['hash-object', '--stdin'], { input: b }).toString().trim();
const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: Error) => e.message,
  );
/** Every file under snapshots/ is a link to a blob whose content has the blob's name as its hash. */
function snapshotsAreSound(repoDir: string): void {
  const snaps = path.join(repoDir, 'snapshots');
  if (!existsSync(snaps)) return;
  for (const c of readdirSync(snaps)) {
    for (const f of readdirSync(path.join(snaps, c), { recursive: true }) as string[]) {
      const p = path.join(snaps, c, f);
      if (lstatSync(p).isDirectory()) continue;
      const bytes = readFileSync(p);
      const blob = path.basename(readlinkSync(p));
      expect(blob.length === 64 ? sha256(bytes) : gitHashObject(bytes), `${p}`).toBe(blob);
    }
  }
}

beforeAll(async () => {
  hub = await startHubServer([{ name: 'alice', token: TOKEN }]);
  files = await tinyModelRepo(path.join(tmp, 'tiny'), alpacaRows(40));
  files['README.md'] = Buffer.from('---\nlicense: apache-2.0\n---\n# tiny\n');
  files['original/consolidated.pth'] = Buffer.from('not loaded');
  commit = hub.seed('model', 'org/tiny', files);
});
afterAll(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  cache = path.join(tmp, `cache-${++n}`);
  hub.faults.length = 0;
  hub.log.length = 0;
});

describe('downloads into the Hugging Face cache exactly as huggingface_hub lays it out', () => {
  it('blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/main; only the files ft loads', async () => {
    const snap = await downloadModel('org/tiny', undefined, opts());
    const repoDir = path.join(cache, 'models--org--tiny');
    expect(snap.dir).toBe(path.join(repoDir, 'snapshots', commit));
    expect(readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(commit);
    expect(snap.files).toEqual(
      ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].filter(
        (f) => f in files,
      ),
    );
    expect(snap.files).toContain('model.safetensors');
    expect(snap.files).not.toContain('README.md');
    for (const f of snap.files) {
      const link = readlinkSync(path.join(snap.dir, f));
      const etag = f.endsWith('.safetensors') ? sha256(files[f]) : gitHashObject(files[f]);
      expect(link).toBe(`../../blobs/${etag}`);
      expect(sha256(readFileSync(path.join(snap.dir, f)))).toBe(sha256(files[f]));
    }
    expect((await readConfig(snap.dir)).hiddenSize).toBe(64);

    // the LFS file came from the CDN host through the Hub's 302, and the token went to neither without being asked
    const cdn = hub.log.filter((r) => r.host === 'cdn');
    expect(cdn.map((r) => r.path)).toEqual([`/lfs/${sha256(files['model.safetensors'])}`]);
    snapshotsAreSound(repoDir);
  });

  it('sends the token to the Hub only, never to the CDN host', async () => {
    await downloadModel('org/tiny', undefined, opts({ token: { token: TOKEN, source: 'HF_TOKEN' } }));
    expect(hub.log.filter((r) => r.host === 'hub').every((r) => r.authorized)).toBe(true);
    expect(hub.log.filter((r) => r.host === 'cdn').some((r) => r.authorized)).toBe(false);
  });

  it('a second run makes no request for the model files, and HF_HUB_OFFLINE=1 needs no server', async () => {
    const first = await downloadModel('org/tiny', undefined, opts());
    hub.log.length = 0;
    const second = await downloadModel('org/tiny', undefined, opts());
    expect(second).toMatchObject({ dir: first.dir, fetched: 0 });
    expect(hub.log.filter((r) => r.path.includes('/resolve/') || r.host === 'cdn')).toEqual([]);
    hub.log.length = 0;
    const offline = await downloadModel(
      'org/tiny',
      undefined,
      opts({ env: { HF_HUB_OFFLINE: '1' }, endpoint: 'http://127.0.0.1:9' }),
    );
    expect(offline.dir).toBe(first.dir);
    expect(offline.files).toEqual(first.files);
    expect(hub.log).toEqual([]);
    expect(await errorOf(downloadModel('org/other', undefined, opts({ env: { HF_HUB_OFFLINE: '1' } })))).toBe(
      `HF_HUB_OFFLINE=1: org/other is not in the cache at ${path.join(cache, 'models--org--other')}; unset HF_HUB_OFFLINE to download it`,
    );
  });

  it('an unreachable Hub falls back to the cached snapshot with a warning', async () => {
    const first = await downloadModel('org/tiny', undefined, opts());
    const dead = await startHubServer([]); // a port nothing listens on any more
    await dead.close();
    const lines: string[] = [];
    const again = await downloadModel('org/tiny', undefined, opts({ endpoint: dead.url, log: (l) => lines.push(l) }));
    expect(again.dir).toBe(first.dir);
    expect(lines).toEqual([
      `ft: warning: cannot reach the Hub at ${dead.url} (connection refused) after 1 attempts; check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache; using the cached snapshot ${commit.slice(0, 12)} of org/tiny`,
    ]);
  });

  it('uses a cache written in huggingface_hub layout by another tool as it is (offline, and online without fetching)', async () => {
    // the layout huggingface_hub's hf_hub_download writes, made by hand
    const repoDir = path.join(cache, 'models--org--tiny');
    mkdirSync(path.join(repoDir, 'blobs'), { recursive: true });
    mkdirSync(path.join(repoDir, 'refs'));
    writeFileSync(path.join(repoDir, 'refs', 'main'), commit);
    for (const f of [
      'config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'generation_config.json',
      'model.safetensors',
    ].filter((f) => f in files)) {
      const etag = f.endsWith('.safetensors') ? sha256(files[f]) : gitHashObject(files[f]);
      writeFileSync(path.join(repoDir, 'blobs', etag), files[f]);
      mkdirSync(path.join(repoDir, 'snapshots', commit), { recursive: true });
      symlinkSync(`../../blobs/${etag}`, path.join(repoDir, 'snapshots', commit, f));
    }
    const offline = await downloadModel('org/tiny', undefined, opts({ env: { HF_HUB_OFFLINE: '1' } }));
    expect(offline.dir).toBe(path.join(repoDir, 'snapshots', commit));
    const online = await downloadModel('org/tiny', 'main', opts());
    expect(online.fetched).toBe(0);
    expect(hub.log.filter((r) => r.path.includes('/resolve/'))).toEqual([]);
  });

  it('picks a revision by branch or commit and records refs/<branch>', async () => {
    const dev = hub.seed(
      'model',
      'org/tiny',
      {
        ...files,
        'config.json': Buffer.from(files['config.json'].toString().replace('"hidden_size": 64', '"hidden_size": 64 ')),
      },
      { branch: 'dev' },
    );
    const snap = await downloadModel('org/tiny', 'dev', opts());
    expect(snap.commit).toBe(dev);
    expect(readFileSync(path.join(cache, 'models--org--tiny', 'refs', 'dev'), 'utf8')).toBe(dev);
    const byCommit = await downloadModel('org/tiny', commit, opts());
    expect(byCommit.dir).toBe(path.join(cache, 'models--org--tiny', 'snapshots', commit));
  });

  it('downloads several files at once', async () => {
    const shards = Object.fromEntries([1, 2, 3, 4].map((i) => [`shard-${i}.safetensors`, Buffer.alloc(2000, i)]));
    hub.seed('model', 'org/sharded', shards);
    hub.faults.push({ match: '/shard-', kind: 'slow', delayMs: 300 });
    const snap = await downloadSnapshot({ ...opts(), repo: 'org/sharded', concurrency: 4 });
    expect(snap.fetched).toBe(4);
    expect(hub.maxInFlight).toBeGreaterThanOrEqual(2);
  });

  it('--include / --exclude select files fnmatch-style; --local-dir gets copies', async () => {
    const snap = await downloadSnapshot({
      ...opts(),
      repo: 'org/tiny',
      select: patternSelector(['*.json', 'original/*'], ['tokenizer*']),
      localDir: path.join(tmp, `local-${n}`),
    });
    expect(snap.files).toEqual(
      ['config.json', 'generation_config.json', 'original/consolidated.pth'].filter((f) => f in files),
    );
    expect(snap.dir).toBe(path.join(tmp, `local-${n}`));
    expect(lstatSync(path.join(snap.dir, 'config.json')).isSymbolicLink()).toBe(false);
    expect(readFileSync(path.join(snap.dir, 'original/consolidated.pth'), 'utf8')).toBe('not loaded');
  });

  it('refuses a file name that would escape the cache folder', async () => {
    hub.seed('model', 'org/evil', { 'config.json': '{}', '../../../escape.txt': 'x' });
    expect(await errorOf(downloadSnapshot({ ...opts(), repo: 'org/evil' }))).toBe(
      'org/evil: the repo lists a file named "../../../escape.txt", which would land outside the cache folder; refusing to download',
    );
    expect(existsSync(path.join(cache, 'escape.txt'))).toBe(false);
  });

  it('refuses a repo with only pickled weights before downloading anything', async () => {
    hub.seed('model', 'org/pickled', {
      'config.json': files['config.json'],
      'pytorch_model.bin': Buffer.from([0x80, 0x02, 0x7d, 0x71]),
    });
    expect(await errorOf(downloadModel('org/pickled', undefined, opts()))).toBe(
      'org/pickled: has only pickled weights (pytorch_model.bin); ft loads *.safetensors only, since loading a pickle can run code (convert the weights to safetensors, or use a repo that has them)',
    );
    expect(hub.log.filter((r) => r.path.includes('/resolve/'))).toEqual([]);
    expect(existsSync(path.join(cache, 'models--org--pickled', 'blobs'))).toBe(false);
  });
});

describe('faults: the cache never holds a corrupt file under snapshots/', () => {
  const weights = () => files['model.safetensors'];
  const blobOf = (f: string) =>
    path.join(
      cache,
      'models--org--tiny',
      'blobs',
      f.endsWith('.safetensors') ? sha256(files[f]) : gitHashObject(files[f]),
    );

  it('a connection dropped mid-file: the partial file stays as .incomplete and the next run resumes it with a Range request', async () => {
    hub.faults.push({ match: 'model.safetensors', kind: 'drop', afterBytes: 5000 });
    const msg = await errorOf(downloadModel('org/tiny', undefined, opts()));
    expect(msg).toBe(
      `org/tiny: model.safetensors: the download broke off 1 times (5000 of ${weights().length} bytes kept in ${blobOf('model.safetensors')}.incomplete); run again to resume`,
    );
    expect(statSync(`${blobOf('model.safetensors')}.incomplete`).size).toBe(5000);
    expect(existsSync(path.join(cache, 'models--org--tiny', 'snapshots', commit, 'model.safetensors'))).toBe(false);
    expect(existsSync(path.join(cache, 'models--org--tiny', 'refs', 'main'))).toBe(false);
    snapshotsAreSound(path.join(cache, 'models--org--tiny'));
    hub.faults.length = 0;
    hub.log.length = 0;
    const snap = await downloadModel('org/tiny', undefined, opts());
    expect(hub.log.filter((r) => r.host === 'cdn').map((r) => r.range)).toEqual(['bytes=5000-']);
    expect(sha256(readFileSync(path.join(snap.dir, 'model.safetensors')))).toBe(sha256(weights()));
    expect(existsSync(`${blobOf('model.safetensors')}.incomplete`)).toBe(false);
    snapshotsAreSound(path.join(cache, 'models--org--tiny'));
  });

  it('a body shorter than its Content-Length, and one whose Content-Length is short, are resumed within the run when retries allow', async () => {
    hub.faults.push(
      { match: 'model.safetensors', kind: 'drop', afterBytes: 3000, times: 1 },
      { match: 'model.safetensors', kind: 'truncate', afterBytes: 4000, times: 1 },
    );
    const snap = await downloadModel('org/tiny', undefined, opts({ retries: 2 }));
    expect(hub.log.filter((r) => r.host === 'cdn').map((r) => r.range)).toEqual([
      undefined,
      'bytes=3000-',
      'bytes=7000-',
    ]);
    expect(sha256(readFileSync(path.join(snap.dir, 'model.safetensors')))).toBe(sha256(weights()));
  });

  it('content with the wrong sha256, or a wrong etag, is refused and nothing of it is kept', async () => {
    hub.faults.push({ match: 'model.safetensors', kind: 'corrupt' });
    const msg = await errorOf(downloadModel('org/tiny', undefined, opts()));
    expect(msg).toMatch(
      new RegExp(
        `^model\\.safetensors: downloaded content with sha256 [0-9a-f]{64}, expected ${sha256(weights())}; the file was removed, run again to download it anew$`,
      ),
    );
    expect(existsSync(`${blobOf('model.safetensors')}.incomplete`)).toBe(false);
    expect(existsSync(blobOf('model.safetensors'))).toBe(false);
    hub.faults.length = 0;
    // (fresh caches: the files the first run completed are cached and would not be asked for again)
    hub.faults.push({ match: '/config.json', kind: 'etag' });
    expect(await errorOf(downloadModel('org/tiny', undefined, opts({ cacheDir: path.join(cache, 'b') })))).toMatch(
      /^org\/tiny: config\.json: the Hub serves etag [0-9a-f]{64}, but the tree listing says [0-9a-f]{40}; nothing was kept, try again$/,
    );
    hub.faults.length = 0;
    hub.faults.push({ match: '/tokenizer.json', kind: 'corrupt' });
    expect(await errorOf(downloadModel('org/tiny', undefined, opts({ cacheDir: path.join(cache, 'c') })))).toMatch(
      /^tokenizer\.json: downloaded content with git blob id [0-9a-f]{40}, expected [0-9a-f]{40}; the file was removed/,
    );
    for (const c of [cache, path.join(cache, 'b'), path.join(cache, 'c')])
      snapshotsAreSound(path.join(c, 'models--org--tiny'));
  });

  it('401, 403 gated, 404 repo / revision / file: one line each, naming the repo, and never the token', async () => {
    hub.seed('model', 'org/gated', files, { gatedFor: ['nobody'] });
    const withToken = opts({ token: { token: TOKEN, source: 'HF_TOKEN' } });
    const msgs = [
      await errorOf(downloadModel('org/gated', undefined, opts())),
      await errorOf(downloadModel('org/gated', undefined, withToken)),
      await errorOf(downloadModel('org/missing', undefined, opts())),
      await errorOf(downloadModel('org/missing', undefined, withToken)),
      await errorOf(downloadModel('org/tiny', 'v9', withToken)),
      await errorOf(
        downloadModel(
          'org/tiny',
          undefined,
          opts({ token: { token: 'hf_wrong', source: '/home/u/.cache/huggingface/token' } }),
        ),
      ),
    ];
    expect(msgs).toEqual([
      `org/gated: gated: accept the license at ${hub.url}/org/gated, then set HF_TOKEN (401)`,
      `org/gated: gated: accept the license at ${hub.url}/org/gated, then set HF_TOKEN (403; the token from HF_TOKEN has no access yet)`,
      `org/missing: not found on ${hub.url}, or private and no token (HF_TOKEN is not set) gives no access (401); check the name, or set HF_TOKEN`,
      `org/missing: not found on ${hub.url}, or private and the token from HF_TOKEN gives no access (404); check the name, or set HF_TOKEN`,
      `org/tiny: no revision 'v9' on ${hub.url} (404); check base_model_revision / revision`,
      `the Hub at ${hub.url} rejected the token from /home/u/.cache/huggingface/token (401); log in again or set HF_TOKEN`,
    ]);
    hub.faults.push({ match: '/tokenizer.json', kind: 'status', status: 404, errorCode: 'EntryNotFound' });
    expect(await errorOf(downloadModel('org/tiny', undefined, withToken))).toBe(
      `org/tiny: no file 'tokenizer.json' at revision 'main' on ${hub.url} (404)`,
    );
    for (const m of msgs) expect(m).not.toContain(TOKEN);
    expect(existsSync(path.join(cache, 'models--org--gated', 'snapshots'))).toBe(false);
  });

  it('429 with Retry-After, then success; 500 forever: bounded retries, then one clear line', async () => {
    hub.faults.push(
      { match: '/api/models/org/tiny/revision', kind: 'status', status: 429, retryAfter: '0', times: 1 },
      { match: '/config.json', kind: 'status', status: 503, times: 1 },
    );
    const lines: string[] = [];
    const snap = await downloadModel('org/tiny', undefined, opts({ retries: 3, log: (l) => lines.push(l) }));
    expect(snap.fetched).toBeGreaterThan(0);
    expect(hub.requests.filter((r) => r.includes('/api/models/org/tiny/revision')).length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => /answered (429|503)/.test(l))).toEqual([
      'ft: the Hub answered 429 for /api/models/org/tiny/revision/main; retrying in 0.0 s (1/3)',
      `ft: the Hub answered 503 for /org/tiny/resolve/${commit}/config.json; retrying in 0.0 s (1/3)`,
    ]);
    hub.faults.push({ match: '/api/models/', kind: 'status', status: 500 });
    hub.log.length = 0;
    expect(
      await errorOf(downloadModel('org/tiny', undefined, opts({ retries: 2, cacheDir: path.join(tmp, 'fresh-500') }))),
    ).toBe(
      `org/tiny: the Hub at ${hub.url} answered server error 500 3 times for /api/models/org/tiny/revision/main; try again later`,
    );
    expect(hub.log).toHaveLength(3);
  });

  it('a disk-full write error names the file; nothing lands under snapshots/', async () => {
    const blob = blobOf('model.safetensors');
    mkdirSync(path.dirname(blob), { recursive: true });
    symlinkSync('/dev/full', `${blob}.incomplete`); // every write to it fails with ENOSPC, as on a full disk
    expect(await errorOf(downloadModel('org/tiny', undefined, opts()))).toBe(
      `${blob}.incomplete: cannot write the download (no space left on the device); free space or fix the folder, then run again (a partial file resumes)`,
    );
    expect(existsSync(path.join(cache, 'models--org--tiny', 'snapshots', commit, 'model.safetensors'))).toBe(false);
    snapshotsAreSound(path.join(cache, 'models--org--tiny'));
  });
});
