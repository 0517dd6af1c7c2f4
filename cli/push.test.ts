import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHubServer, type HubServer } from '../test/hub-server.ts';
import { runFt } from '../test/run-ft.ts';

let hub: HubServer;
let dir: string;

const ft = (args: string[], env: Record<string, string>) =>
  runFt(args, { env: { PATH: process.env.PATH, HOME: dir, ...env }, timeoutMs: 60_000 });

beforeAll(async () => {
  hub = await startHubServer([{ name: 'carol', token: 'hf_carol' }]);
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-cli-push-'));
  await fsp.mkdir(path.join(dir, 'out'));
  await fsp.writeFile(path.join(dir, 'out', 'README.md'), '# hi\n');
});
afterAll(async () => {
  await hub?.close();
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

describe('ft push', () => {
  it('uploads a folder and prints the repo URL and commit', async () => {
    const r = await ft(['push', path.join(dir, 'out'), '--repo', 'carol/demo', '--private', '--quiet'], {
      HF_TOKEN: 'hf_carol',
      HF_ENDPOINT: hub.url,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^created ${hub.url}/carol/demo \\(main\\): 1 files, 0\\.0 MB, commit [0-9a-f]{40}\\n$`),
    );
    expect(hub.repos.get('carol/demo')!.private).toBe(true);
  });

  it('exits 1 with a one-line ft: message when no token is configured', async () => {
    const r = await ft(['push', path.join(dir, 'out'), '--repo', 'carol/demo'], { HF_ENDPOINT: hub.url });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ft: no Hugging Face token: set HF_TOKEN, or put one in .*token.*\n$/);
  });
});
