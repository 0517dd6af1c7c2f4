// Where the Hub is and who we are, resolved the way huggingface_hub does: HF_ENDPOINT; HF_TOKEN (or the legacy
// HUGGING_FACE_HUB_TOKEN), else the token file at $HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token.
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FtError } from '../util/errors.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubToken {
  token: string;
  /** Where it came from, for error messages: "HF_TOKEN" or the token file's path. */
  source: string;
}

type Env = Record<string, string | undefined>;

/** The Hub base URL without a trailing slash; FtError if HF_ENDPOINT is not an http(s) URL. */
export function resolveEndpoint(env: Env = process.env): string {
  const raw = env.HF_ENDPOINT?.trim() || DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FtError(`HF_ENDPOINT: expected an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new FtError(`HF_ENDPOINT: expected an http(s) URL, got ${JSON.stringify(raw)}`);
  return raw.replace(/\/+$/, '');
}

/** The token file huggingface_hub reads and `huggingface-cli login` writes. */
export function tokenFilePath(env: Env = process.env): string {
  if (env.HF_TOKEN_PATH) return env.HF_TOKEN_PATH;
  const hfHome = env.HF_HOME || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(hfHome, 'token');
}

/** The access token, or null when none is configured anywhere. */
export async function resolveToken(env: Env = process.env): Promise<HubToken | null> {
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const v = env[name]?.trim();
    if (v) return { token: v, source: name };
  }
  const file = tokenFilePath(env);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new FtError(
      `${file}: cannot read the Hugging Face token file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  const token = text.trim();
  return token ? { token, source: file } : null;
}
