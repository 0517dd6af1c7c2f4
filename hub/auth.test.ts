import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ENDPOINT, resolveEndpoint, resolveToken, tokenFilePath } from './auth.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-auth-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('Hub token and endpoint resolution (as huggingface_hub)', () => {
  it('prefers HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, then the token file, trimming whitespace', async () => {
    const file = path.join(tmp, 'tok');
    await fsp.writeFile(file, '  hf_file\n');
    expect(
      await resolveToken({ HF_TOKEN: 'hf_env', HUGGING_FACE_HUB_TOKEN: 'hf_legacy', HF_TOKEN_PATH: file }),
    ).toEqual({ token: 'hf_env', source: 'HF_TOKEN' });
    expect(await resolveToken({ HF_TOKEN: ' ', HUGGING_FACE_HUB_TOKEN: 'hf_legacy', HF_TOKEN_PATH: file })).toEqual({
      token: 'hf_legacy',
      source: 'HUGGING_FACE_HUB_TOKEN',
    });
    expect(await resolveToken({ HF_TOKEN_PATH: file })).toEqual({ token: 'hf_file', source: file });
  });

  it('finds the token file at HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token', async () => {
    expect(tokenFilePath({ HF_TOKEN_PATH: '/x/t', HF_HOME: '/h' })).toBe('/x/t');
    expect(tokenFilePath({ HF_HOME: '/h' })).toBe(path.join('/h', 'token'));
    expect(tokenFilePath({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'token'));
    await fsp.writeFile(path.join(tmp, 'token'), 'hf_home\n');
    expect(await resolveToken({ HF_HOME: tmp })).toEqual({ token: 'hf_home', source: path.join(tmp, 'token') });
    expect(await resolveToken({ HF_HOME: path.join(tmp, 'nowhere') })).toBeNull();
    await fsp.writeFile(path.join(tmp, 'empty'), '\n');
    expect(await resolveToken({ HF_TOKEN_PATH: path.join(tmp, 'empty') })).toBeNull();
  });

  it('takes the endpoint from HF_ENDPOINT without a trailing slash, defaulting to huggingface.co, and rejects a non-URL', () => {
    expect(resolveEndpoint({})).toBe(DEFAULT_ENDPOINT);
    expect(resolveEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:8080/' })).toBe('http://127.0.0.1:8080');
    expect(() => resolveEndpoint({ HF_ENDPOINT: 'ftp://x' })).toThrow(/HF_ENDPOINT: expected an http\(s\) URL/);
    expect(() => resolveEndpoint({ HF_ENDPOINT: 'not a url' })).toThrow(/HF_ENDPOINT/);
  });
});
