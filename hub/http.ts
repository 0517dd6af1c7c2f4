// HTTP for the Hub with bounded waits: every request gets a deadline for its answer (longer by the time its body takes
// to send at a slow link's rate) and for every pause while its body is read, and failures that may pass (network
// errors, timeouts, 429, 5xx) are retried a bounded number of times with exponential backoff (Retry-After honoured).
// Requests that change state (POST, PATCH) are retried only when the server cannot have acted on them.

export interface RetryOptions {
  /** longest wait, in ms, for an answer's headers (plus upload time, see MIN_UPLOAD_BYTES_PER_S) and for each body chunk */
  timeoutMs: number;
  /** attempts after the first */
  retries: number;
  /** of those, how many may follow a timeout (a server that let one deadline pass is likely gone); default 1 */
  timeoutRetries?: number;
  /** pause before the first retry, doubled for each next one; default 500 ms */
  backoffMs?: number;
  /** longest pause, Retry-After included; default 30 s */
  maxBackoffMs?: number;
  /** told before each retry, e.g. to log it */
  onRetry?: (event: { url: string; attempt: number; delayMs: number; reason: string; status?: number }) => void;
}

/**
 * ft's defaults for the Hub: 30 s of silence is a dead server (a server that never answers costs two attempts, about
 * 60 s); network errors and 429/5xx get four retries over about 7.5 s of backoff.
 */
export const HUB_RETRY: RetryOptions = { timeoutMs: 30_000, retries: 4 };

/** The slowest upload ft waits for: a request body adds size / this many seconds to its answer deadline. */
export const MIN_UPLOAD_BYTES_PER_S = 64 * 1024;

/** No answer (or no next body chunk) within the deadline. */
export class HttpTimeoutError extends Error {
  override name = 'HttpTimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(
    readonly url: string,
    readonly ms: number,
  ) {
    super(`no answer from ${url} within ${ms / 1000} s`);
  }
}

/** The last failure of a request whose retries ran out. */
export class RetriesExhaustedError extends Error {
  override name = 'RetriesExhaustedError';
  constructor(
    readonly url: string,
    readonly attempts: number,
    override readonly cause: unknown,
  ) {
    super(`${url}: ${attempts} attempts failed (${(cause as Error)?.message ?? cause})`);
  }
}

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
/** statuses that say the request was not acted on, so even a POST may be sent again */
const NOT_ACTED_ON_STATUS = new Set([429, 503]);
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

/**
 * The error code behind a failed fetch or body read (undici nests it in `cause`, sometimes twice): the first one, or
 * the first one in `codes` when given.
 */
export function errorCode(e: unknown, codes?: ReadonlySet<string>): string | undefined {
  for (let c: unknown = e, depth = 0; c && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && (!codes || codes.has(code))) return code;
  }
  return undefined;
}

function bodyBytes(body: RequestInit['body']): number | null {
  if (body === undefined || body === null) return 0;
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Blob) return body.size;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return body.byteLength;
  if (body instanceof URLSearchParams) return Buffer.byteLength(body.toString());
  return null; // a stream: unknown size, and it cannot be sent twice
}

export const sleep = (ms: number, signal?: AbortSignal | null) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

/**
 * The pause before retry `attempt` (1-based): the server's Retry-After (seconds or an HTTP date) when it sent one,
 * else exponential backoff; at most maxBackoffMs.
 */
export function retryDelay(
  attempt: number,
  retryAfter: string | null | undefined,
  opts: Pick<RetryOptions, 'backoffMs' | 'maxBackoffMs'>,
): number {
  const max = opts.maxBackoffMs ?? 30_000;
  if (retryAfter) {
    const secs = /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) : (Date.parse(retryAfter) - Date.now()) / 1000;
    if (Number.isFinite(secs)) return Math.min(max, Math.max(secs, 0) * 1000);
  }
  return Math.min(max, (opts.backoffMs ?? 500) * 2 ** (attempt - 1));
}

/**
 * One attempt: aborts when the headers take longer than the deadline, and, once they came, when a read of the body
 * waits longer than `timeoutMs` for its next chunk.
 */
async function attempt(url: string, init: RequestInit, opts: RetryOptions): Promise<Response> {
  const controller = new AbortController();
  const signal = init.signal ? AbortSignal.any([init.signal, controller.signal]) : controller.signal;
  const headersMs = opts.timeoutMs + Math.ceil(((bodyBytes(init.body) ?? 0) / MIN_UPLOAD_BYTES_PER_S) * 1000);
  const timer = setTimeout(() => controller.abort(new HttpTimeoutError(url, headersMs)), headersMs);
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal });
  } finally {
    clearTimeout(timer);
  }
  if (!res.body || NULL_BODY_STATUS.has(res.status)) return res;
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      const idle = setTimeout(() => controller.abort(new HttpTimeoutError(url, opts.timeoutMs)), opts.timeoutMs);
      try {
        const { done, value } = await reader.read();
        if (done) ctrl.close();
        else ctrl.enqueue(value);
      } catch (e) {
        ctrl.error(e);
      } finally {
        clearTimeout(idle);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
  const wrapped = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  Object.defineProperty(wrapped, 'url', { value: res.url });
  Object.defineProperty(wrapped, 'redirected', { value: res.redirected });
  return wrapped;
}

/**
 * fetch with deadlines and bounded retries (see the top of this file). Returns the last answer when retries run out
 * on a retryable status (the caller reports it); throws RetriesExhaustedError when they run out on errors.
 */
export async function fetchWithRetry(
  input: string | URL,
  init: RequestInit = {},
  opts: RetryOptions,
): Promise<Response> {
  const url = String(input);
  const method = (init.method ?? 'GET').toUpperCase();
  const replayable = bodyBytes(init.body) !== null;
  let tries = 0;
  let timeouts = 0;
  for (;;) {
    tries++;
    let res: Response | null = null;
    let error: unknown = null;
    try {
      res = await attempt(url, init, opts);
    } catch (e) {
      if (init.signal?.aborted) throw e; // the caller gave up
      error = e;
      if (e instanceof HttpTimeoutError) timeouts++;
    }
    const retryable =
      replayable &&
      tries <= opts.retries &&
      timeouts <= (opts.timeoutRetries ?? 1) &&
      (res
        ? RETRY_STATUS.has(res.status) && (IDEMPOTENT.has(method) || NOT_ACTED_ON_STATUS.has(res.status))
        : IDEMPOTENT.has(method) || NOT_SENT_CODES.has(errorCode(error) ?? ''));
    if (!retryable) {
      if (res) return res;
      throw tries > 1 ? new RetriesExhaustedError(url, tries, error) : error;
    }
    const delayMs = retryDelay(tries, res?.headers.get('retry-after'), opts);
    opts.onRetry?.({
      url,
      attempt: tries,
      delayMs,
      reason: res ? `HTTP ${res.status}` : ((error as Error)?.message ?? String(error)),
      status: res?.status,
    });
    await res?.body?.cancel().catch(() => {});
    await sleep(delayMs, init.signal);
  }
}

/** Hub endpoints that answer JSON: the REST API and the git-lfs batch API. */
const JSON_ENDPOINT = /\/api\/|\.git\/info\/lfs\//;

/** Answered a JSON endpoint with something else (a proxy's login page, a web server that is not the Hub). */
export class NotJsonError extends Error {
  override name = 'NotJsonError';
  constructor(
    readonly url: string,
    readonly status: number,
    readonly contentType: string,
  ) {
    super(`${url} answered ${status} with ${contentType || 'no content type'}, not JSON`);
  }
}

/**
 * A `fetch` for @huggingface/hub's `fetch` parameter: fetchWithRetry with `opts`, and a successful answer from a JSON
 * endpoint that is not JSON is a NotJsonError (the client would fail parsing it with no word of where it came from).
 */
export function hubFetch(opts: RetryOptions): typeof fetch {
  return async (input, init) => {
    if (input instanceof Request) throw new TypeError('hubFetch takes a URL and an init, not a Request');
    const res = await fetchWithRetry(input, init, opts);
    const type = res.headers.get('content-type') ?? '';
    if (res.ok && res.status !== 204 && JSON_ENDPOINT.test(new URL(String(input)).pathname) && !/json/i.test(type)) {
      await res.body?.cancel().catch(() => {});
      throw new NotJsonError(String(input), res.status, type.split(';')[0]);
    }
    return res;
  };
}
