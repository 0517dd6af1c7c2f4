// `ft download` as a user runs it (the real bin, a child process) against the local Hub.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHubServer, type HubServer } from '../test/hub-server.ts';
import { runFt } from '../test/run-ft.ts';

const TOKEN = 'hf_bob_0123456789abcdef';
const tmp = mkdtempSync(path.join(tmpdir(), 'ft-download-cli-'));
let hub: HubServer;
let commit: string;

const ft = (args: string[], env: Record<string, string>) =>
  runFt(args, { env: { PATH: process.env.PATH, HOME: tmp, ...env }, timeoutMs: 60_000 });

beforeAll(async () => {
  hub = await startHubServer([{ name: 'bob', token: TOKEN }]);
  commit = hub.seed('dataset', 'org/data', {
    'README.md': '# data\n',
    'data/train.jsonl': '{"instruction":"a","input":"","output":"b"}\n',
    'data/test.jsonl': '{}\n',
    'notes.txt': 'x',
  });
});
afterAll(async () => {
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('ft download', () => {
  it('prints the snapshot folder; --repo-type dataset, --include and --exclude pick the files; the token is sent, never shown', async () => {
    const cache = path.join(tmp, 'cache');
    const r = await ft(
      ['download', 'org/data', '--repo-type', 'dataset', '--include', 'data/*', '--exclude', '*test*'],
      { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: TOKEN },
    );
    expect(r.code, r.stderr).toBe(0);
    const snap = path.join(cache, 'datasets--org--data', 'snapshots', commit);
    expect(r.stdout).toBe(`${snap}\n`);
    expect(readdirSync(snap, { recursive: true })).toEqual(['data', path.join('data', 'train.jsonl')]);
    expect(hub.log.filter((l) => l.host === 'hub').every((l) => l.authorized)).toBe(true);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });
});
