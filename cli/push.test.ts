import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHubServer, type HubServer } from '../test/hub-server.ts';

const FT = fileURLToPath(new URL('./ft.js', import.meta.url));
let hub: HubServer;
let dir: string;

/** Runs the real `ft` bin (async, so the in-process Hub server keeps serving). */
function ft(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [FT, ...args],
      { env: { PATH: process.env.PATH, HOME: dir, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

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
