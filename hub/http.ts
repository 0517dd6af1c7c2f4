// Every download request to the Hub goes through hubFetch: 429 and 5xx are retried (Retry-After honoured, else
// exponential backoff) a bounded number of times, lost connections too; 401/403/404 become one-line FtErrors that
// say what to do. @huggingface/hub takes it as its `fetch`, so its calls get the same handling (it has no retries).
import { FtError } from '../util/errors.ts';
import type { RepoType } from './cache.ts';
import { networkCode } from './errors.ts';

export interface HubRequestContext {
  endpoint: string;
  repoType: RepoType;
  repo: string;
  revision: string;
  /** Where the token came from (HF_TOKEN or the token file), never the token itself; null when none is sent. */
  tokenSource: string | null;
  /** Attempts after the first one for 429, 5xx and lost connections. */
  retries: number;
  /** First backoff delay; doubles per attempt. */
  retryBaseMs: number;
  log: (line: string) => void;
}

/** The Hub could not be reached (no HTTP answer); a cached snapshot may stand in. */
export class HubUnreachableError extends FtError {}

const MAX_RETRY_AFTER_S = 60;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Delay before attempt `attempt` (0-based retries): Retry-After seconds or HTTP date (capped), else base * 2^attempt. */
export function retryDelay(ctx: HubRequestContext, attempt: number, retryAfter: string | null): number {
  if (retryAfter) {
    const secs = /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) : (Date.parse(retryAfter) - Date.now()) / 1000;
    if (Number.isFinite(secs)) return Math.min(Math.max(secs, 0), MAX_RETRY_AFTER_S) * 1000;
  }
  return ctx.retryBaseMs * 2 ** attempt;
}

/** The page of a repo on the Hub, where a gated repo's license is accepted. */
export function repoUrl(ctx: Pick<HubRequestContext, 'endpoint' | 'repoType' | 'repo'>): string {
  return `${ctx.endpoint}/${ctx.repoType === 'dataset' ? 'datasets/' : ''}${ctx.repo}`;
}

/** The file a request is about (resolve/<rev>/<file>), for 404 messages. */
function fileOf(url: string): string | null {
  const m = /\/resolve\/[^/]+\/(.+?)(?:\?|$)/.exec(new URL(url).pathname);
  return m ? decodeURIComponent(m[1]) : null;
}

/** One line for a 401/403/404 answer, from the Hub's X-Error-Code as huggingface_hub reads it. */
function httpErrorMessage(ctx: HubRequestContext, status: number, errorCode: string | null, url: string): string {
  const what = `${ctx.repoType === 'dataset' ? 'dataset ' : ''}${ctx.repo}`;
  const sent = ctx.tokenSource ? `the token from ${ctx.tokenSource}` : 'no token (HF_TOKEN is not set)';
  if (errorCode === 'GatedRepo') {
    const held = ctx.tokenSource ? `; the token from ${ctx.tokenSource} has no access yet` : '';
    return `${what}: gated: accept the license at ${repoUrl(ctx)}, then set HF_TOKEN (${status}${held})`;
  }
  if (status === 401 && ctx.tokenSource && errorCode !== 'RepoNotFound') {
    return `the Hub at ${ctx.endpoint} rejected the token from ${ctx.tokenSource} (401); log in again or set HF_TOKEN`;
  }
  if (status === 401 || errorCode === 'RepoNotFound') {
    return `${what}: not found on ${ctx.endpoint}, or private and ${sent} gives no access (${status}); check the name, or set HF_TOKEN`;
  }
  if (status === 403) return `${what}: ${sent} has no read access on ${ctx.endpoint} (403); use a token that can read this repo`;
  if (errorCode === 'RevisionNotFound') return `${what}: no revision '${ctx.revision}' on ${ctx.endpoint} (404); check base_model_revision / revision`;
  const file = fileOf(url);
  if (file || errorCode === 'EntryNotFound') return `${what}: no file '${file ?? url}' at revision '${ctx.revision}' on ${ctx.endpoint} (404)`;
  return `${what}: not found on ${ctx.endpoint} (404)`;
}

/** A fetch that retries what may pass and turns what will not into FtError; other answers are returned as they are. */
export function hubFetch(ctx: HubRequestContext): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await fetch(input, init);
      } catch (e) {
        const code = networkCode(e);
        if (!code) throw e;
        if (attempt < ctx.retries) {
          await sleep(retryDelay(ctx, attempt, null));
          continue;
        }
        throw new HubUnreachableError(`cannot reach the Hub at ${new URL(url).origin} (${code === 'ECONNREFUSED' ? 'connection refused' : code}) after ${attempt + 1} attempts; check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache`);
      }
      if (res.status === 429 || res.status >= 500) {
        await res.body?.cancel();
        if (attempt < ctx.retries) {
          const delay = retryDelay(ctx, attempt, res.headers.get('Retry-After'));
          ctx.log(`ft: the Hub answered ${res.status} for ${new URL(url).pathname}; retrying in ${(delay / 1000).toFixed(1)} s (${attempt + 1}/${ctx.retries})`);
          await sleep(delay);
          continue;
        }
        const why = res.status === 429 ? 'rate limited (429)' : `server error ${res.status}`;
        throw new FtError(`${ctx.repo}: the Hub at ${ctx.endpoint} answered ${why} ${attempt + 1} times for ${new URL(url).pathname}; try again later`);
      }
      if (res.status === 401 || res.status === 403 || res.status === 404) {
        await res.body?.cancel();
        throw new FtError(httpErrorMessage(ctx, res.status, res.headers.get('X-Error-Code'), url));
      }
      return res;
    }
  };
}
