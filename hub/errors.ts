// Turns what @huggingface/hub throws (HubApiError with a status, fetch's TypeError with a socket cause,
// its own TypeErrors on bad input) and what hub/http.ts throws (timeouts, retries run out, an answer that is not
// JSON) into one-line FtErrors that say what to do, with the token redacted from everything.
import { HubApiError } from '@huggingface/hub';
import { FtError } from '../util/errors.ts';
import { errorCode, HttpTimeoutError, NotJsonError, RetriesExhaustedError } from './http.ts';
import { redact } from './redact.ts';

export interface HubErrorContext {
  endpoint: string;
  /** `namespace/name` */
  repo: string;
  /** Where the token came from (HF_TOKEN or the token file path). */
  tokenSource: string;
  /** Who the token belongs to, once known. */
  user?: string;
  /** The token itself, redacted from every message. */
  token?: string;
}

/** Longest server message quoted in an error (an HTML error page would flood the terminal). */
const MAX_QUOTE = 200;

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** The server's own message without the client's ". URL: ..." trailer, on one line. */
function serverMessage(e: HubApiError): string {
  const fromBody =
    typeof e.data?.error === 'string' ? e.data.error : typeof e.data?.message === 'string' ? e.data.message : undefined;
  const msg = (fromBody ?? e.message.replace(/\. URL: .*$/s, '')).replace(/\s+/g, ' ').trim();
  return msg.length > MAX_QUOTE ? `${msg.slice(0, MAX_QUOTE)}...` : msg;
}

/** The socket error code behind a failed fetch or body read, if any (see errorCode). */
export const networkCode = (e: unknown): string | undefined => errorCode(e, NETWORK_CODES);

/** One line for any failure of a Hub request, the token redacted; an unexpected error keeps its stack, redacted too. */
export function toFtError(e: unknown, ctx: HubErrorContext): Error {
  const err = describe(e, ctx);
  const secrets = ctx.token ? [ctx.token] : [];
  if (err instanceof FtError) return new FtError(redact(err.message, secrets));
  const clean = new Error(redact(err.message, secrets));
  clean.stack = redact(err.stack ?? clean.message, secrets);
  return clean;
}

function describe(e: unknown, ctx: HubErrorContext): Error {
  if (e instanceof FtError) return e;
  const attempts = e instanceof RetriesExhaustedError ? ` (${e.attempts} attempts)` : '';
  const last = e instanceof RetriesExhaustedError ? e.cause : e;
  if (last instanceof HttpTimeoutError) {
    return new FtError(
      `the Hub at ${ctx.endpoint} did not answer ${new URL(last.url).pathname} within ${last.ms / 1000} s${attempts}; check the network or HF_ENDPOINT`,
    );
  }
  if (last instanceof NotJsonError) {
    return new FtError(
      `the Hub at ${ctx.endpoint} answered ${new URL(last.url).pathname} with ${last.status} ${last.contentType || 'no content type'}, not JSON; is HF_ENDPOINT a Hugging Face Hub (a proxy or login page in the way)?`,
    );
  }
  if (last instanceof SyntaxError) {
    return new FtError(
      `the Hub at ${ctx.endpoint} answered with invalid JSON (${last.message.slice(0, MAX_QUOTE)}); is HF_ENDPOINT a Hugging Face Hub?`,
    );
  }
  const code = networkCode(last);
  if (code) {
    const what =
      code === 'ECONNREFUSED'
        ? 'connection refused'
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? 'host not found'
          : code;
    return new FtError(
      `cannot reach the Hub at ${ctx.endpoint} (${what})${attempts}; check the network or HF_ENDPOINT`,
    );
  }
  if (e instanceof HubApiError) {
    const msg = serverMessage(e);
    const who = ctx.user ? `user ${ctx.user}` : 'the token';
    switch (e.statusCode) {
      case 401:
        return new FtError(
          `the Hub at ${ctx.endpoint} rejected the token from ${ctx.tokenSource} (401: ${msg}); log in again or set HF_TOKEN`,
        );
      case 403:
        return new FtError(
          `${ctx.repo}: ${who} has no write access on ${ctx.endpoint} (403: ${msg}); the name may belong to someone else, or the token is read-only`,
        );
      case 404:
        return new FtError(`${ctx.repo}: not found on ${ctx.endpoint} (404: ${msg})`);
      case 409:
        return new FtError(`${ctx.repo}: conflict on ${ctx.endpoint} (409: ${msg})`);
      default:
        return new FtError(`${ctx.repo}: the Hub at ${ctx.endpoint} answered ${e.statusCode} (${msg})`);
    }
  }
  if (e instanceof TypeError && /access token must start with 'hf_'/.test(e.message)) {
    return new FtError(
      `the token from ${ctx.tokenSource} is not a Hugging Face access token (expected it to start with "hf_")`,
    );
  }
  return e instanceof Error ? e : new Error(String(e));
}
