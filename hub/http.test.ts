// fetchWithRetry against a real local HTTP server (test/hub-server.ts) that hangs, stalls, fails and recovers.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHubServer, type HubServer } from '../test/hub-server.ts';
import { fetchWithRetry, HttpTimeoutError, RetriesExhaustedError, type RetryOptions } from './http.ts';

const TOKEN = 'hf_dora_0123456789';
let hub: HubServer;
const auth = { headers: { Authorization: `Bearer ${TOKEN}` } };
const fast: RetryOptions = { timeoutMs: 300, retries: 2, backoffMs: 20 };

beforeAll(async () => {
  hub = await startHubServer([{ name: 'dora', token: TOKEN }]);
});
afterAll(async () => hub?.close());
beforeEach(() => {
  hub.pushFaults.length = 0;
  hub.requests.length = 0;
});

const whoami = () => `${hub.url}/api/whoami-v2`;

describe('fetchWithRetry', () => {
  it('gives up on a server that never answers after the deadline of each of 1 + timeoutRetries attempts', async () => {
    hub.pushFaults.push({ kind: 'hang', route: /whoami/ });
    const t0 = performance.now();
    const err = await fetchWithRetry(whoami(), auth, { ...fast, retries: 4, timeoutRetries: 2 }).catch(
      (e: unknown) => e,
    );
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(RetriesExhaustedError);
    expect((err as RetriesExhaustedError).attempts).toBe(3);
    expect((err as RetriesExhaustedError).cause).toBeInstanceOf(HttpTimeoutError);
    expect(hub.requests).toEqual(Array(3).fill('GET /api/whoami-v2'));
    expect(ms).toBeGreaterThanOrEqual(3 * 300 + 20 + 40);
    expect(ms).toBeLessThan(3000);
    // by default a timeout is retried once
    hub.requests.length = 0;
    await expect(fetchWithRetry(whoami(), auth, { ...fast, retries: 4 })).rejects.toBeInstanceOf(RetriesExhaustedError);
    expect(hub.requests.length).toBe(2);
  }, 10_000);

  it('retries a 503 after the Retry-After the server asked for, and returns the answer that came through', async () => {
    hub.pushFaults.push({ kind: 'status', status: 503, retryAfterS: 1, route: /whoami/, times: 1 });
    const retries: string[] = [];
    const t0 = performance.now();
    const res = await fetchWithRetry(whoami(), auth, {
      ...fast,
      onRetry: (r) => retries.push(`${r.attempt} ${r.delayMs} ${r.reason}`),
    });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(res.status).toBe(200);
    expect((await res.json()).name).toBe('dora');
    expect(retries).toEqual(['1 1000 HTTP 503']);
  });

  it('returns the last 5xx answer when the retries run out, for the caller to report', async () => {
    hub.pushFaults.push({ kind: 'status', status: 502, route: /whoami/ });
    const res = await fetchWithRetry(whoami(), auth, fast);
    expect(res.status).toBe(502);
    expect(hub.requests.length).toBe(3);
  });

  it('sends a POST again only when the server says it did not act on it (503), not after a 500', async () => {
    const create = `${hub.url}/api/repos/create`;
    const body = JSON.stringify({ name: 'r1', type: 'model' });
    hub.pushFaults.push({ kind: 'status', status: 500, route: /repos\/create/, times: 1 });
    expect((await fetchWithRetry(create, { ...auth, method: 'POST', body }, fast)).status).toBe(500);
    expect(hub.requests).toEqual(['POST /api/repos/create']);
    hub.pushFaults.push({ kind: 'status', status: 503, route: /repos\/create/, times: 1 });
    expect((await fetchWithRetry(create, { ...auth, method: 'POST', body }, fast)).status).toBe(200);
    expect(hub.repos.has('dora/r1')).toBe(true);
  });

  it('fails a body read that stalls for longer than the deadline', async () => {
    hub.pushFaults.push({ kind: 'stall-body', route: /whoami/ });
    const res = await fetchWithRetry(whoami(), auth, { ...fast, retries: 0 });
    expect(res.status).toBe(200);
    const t0 = performance.now();
    await expect(res.text()).rejects.toBeInstanceOf(HttpTimeoutError);
    expect(performance.now() - t0).toBeLessThan(2000);
  }, 10_000);

  it('does not time out a body that the caller reads late', async () => {
    const res = await fetchWithRetry(whoami(), auth, fast);
    await new Promise((r) => setTimeout(r, 2 * fast.timeoutMs));
    expect((await res.json()).name).toBe('dora');
  });
});
