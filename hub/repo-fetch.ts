// Every download request for one repo goes through repoFetch: hub/http.ts's deadlines and bounded retries (429,
// 5xx, lost connections; Retry-After honoured), then what will not pass as one-line FtErrors that say what to do
// (401/403 gated/404, retries run out, the Hub unreachable). @huggingface/hub takes it as its `fetch`, so its calls
// get the same handling (it has no retries of its own).
import { FtError } from '../util/errors.ts';
import type { RepoType } from './cache.ts';
import { networkCode } from './errors.ts';
import { HUB_RETRY, hubFetch, HttpTimeoutError, NotJsonError, RetriesExhaustedError } from './http.ts';

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
  /** Longest wait for an answer or for the next chunk of a body (default hub/http.ts HUB_RETRY's). */
  timeoutMs?: number;
  log: (line: string) => void;
}

/** The Hub could not be reached (no HTTP answer); a cached snapshot may stand in. */
export class HubUnreachableError extends FtError {}

const MAX_RETRY_AFTER_MS = 60_000;

/** The transport settings of a repo's requests. */
export function retryOptionsOf(ctx: HubRequestContext) {
  return {
    timeoutMs: ctx.timeoutMs ?? HUB_RETRY.timeoutMs,
    retries: ctx.retries,
    timeoutRetries: ctx.retries,
    backoffMs: ctx.retryBaseMs,
    maxBackoffMs: MAX_RETRY_AFTER_MS,
  };
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
  if (status === 403)
    return `${what}: ${sent} has no read access on ${ctx.endpoint} (403); use a token that can read this repo`;
  if (errorCode === 'RevisionNotFound')
    return `${what}: no revision '${ctx.revision}' on ${ctx.endpoint} (404); check base_model_revision / revision`;
  const file = fileOf(url);
  if (file || errorCode === 'EntryNotFound')
    return `${what}: no file '${file ?? url}' at revision '${ctx.revision}' on ${ctx.endpoint} (404)`;
  return `${what}: not found on ${ctx.endpoint} (404)`;
}

/** A fetch that retries what may pass and turns what will not into FtError; other answers are returned as they are. */
export function repoFetch(ctx: HubRequestContext): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const path = new URL(url).pathname;
    let res: Response;
    try {
      const retrying = hubFetch({
        ...retryOptionsOf(ctx),
        onRetry: (r) =>
          ctx.log(
            `ft: ${r.status ? `the Hub answered ${r.status}` : `no answer from the Hub (${r.reason})`} for ${path}; retrying in ${(r.delayMs / 1000).toFixed(1)} s (${r.attempt}/${ctx.retries})`,
          ),
      });
      res = await retrying(url, init);
    } catch (e) {
      if (e instanceof NotJsonError)
        throw new FtError(`${ctx.repo}: ${e.message}: is ${ctx.endpoint} a Hugging Face Hub (HF_ENDPOINT)?`);
      const attempts = e instanceof RetriesExhaustedError ? e.attempts : 1;
      const cause = e instanceof RetriesExhaustedError ? e.cause : e;
      const code =
        cause instanceof HttpTimeoutError ? 'no answer within ' + cause.ms / 1000 + ' s' : networkCode(cause);
      if (!code) throw e;
      throw new HubUnreachableError(
        `cannot reach the Hub at ${new URL(url).origin} (${code === 'ECONNREFUSED' ? 'connection refused' : code}) after ${attempts} attempts; check the network or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache`,
      );
    }
    if (res.status === 429 || res.status >= 500) {
      await res.body?.cancel();
      const why = res.status === 429 ? 'rate limited (429)' : `server error ${res.status}`;
      throw new FtError(
        `${ctx.repo}: the Hub at ${ctx.endpoint} answered ${why} ${ctx.retries + 1} times for ${path}; try again later`,
      );
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) {
      await res.body?.cancel();
      throw new FtError(httpErrorMessage(ctx, res.status, res.headers.get('X-Error-Code'), url));
    }
    return res;
  };
}
