/**
 * The proxy capability: the guest's only way to the network.
 *
 * The host owns the base URL and the bearer token; the guest gives a path
 * relative to the base URL. Paths that could escape it and host-owned or
 * smuggling headers are refused here. The policy is the Rust host's:
 *
 * - Retries (429, 5xx, timeouts, connection failures; only for requests with
 *   `retry`) happen within a time budget per request. The wait before a retry
 *   is `Retry-After` on a 429 or any 5xx; after a 429 without it, the component's
 *   `limits.throttle-wait-secs`, doubled for each further 429 in a row;
 *   otherwise exponential backoff with jitter. Every wait is capped, and a
 *   retry whose wait would end past the budget is not made: the last answer
 *   is returned (or the last error thrown).
 * - Pacing: at most `requests-per-minute` attempts (retries too) in any
 *   60-second window for the connection, by a GCRA (a token bucket).
 */
import { BlockingFetch, sleepSync } from './blocking-fetch.mjs';
import { WitError } from './errors.mjs';

/** Headers only the host sets. */
// The credentials the component must not see or forge, and wasi-http's
// default forbidden list (hop-by-hop headers that could smuggle a request);
// the same list as sync-host's, which the conformance component checks.
const FORBIDDEN_HEADERS = new Set([
  'authorization', 'cookie', 'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
  'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings',
]);
/** Largest response body accepted. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** The retry policy's defaults (operator flags override them). */
export const DEFAULT_POLICY = Object.freeze({
  /** Time a request may spend on retries, from its first attempt. */
  budgetMs: 600_000,
  /** Longest single wait before a retry, `Retry-After` included. */
  maxWaitMs: 120_000,
  /** First exponential backoff step; doubles on each retry. */
  baseMs: 250,
  /** Per-attempt timeout. */
  timeoutMs: 30_000,
});

/**
 * Refuses anything that is not a plain path under the base URL (same rules
 * as the Rust host's `check_path`). Returns the reason, or null if fine.
 *
 * @param {string} path
 */
export function pathProblem(path) {
  if (!path.startsWith('/')) return 'is not a path relative to the base URL (it must start with `/`)';
  if (path.includes('//')) return 'contains `//`';
  // eslint-disable-next-line no-control-regex
  if (/[\\?#\s\u0000-\u001f\u007f]/.test(path)) {
    return 'contains a character not allowed in a path (`\\`, `?`, `#`, space or control)';
  }
  if (/%(2e|2f|5c|00)/i.test(path)) return 'contains an encoded `.`, `/`, `\\` or NUL';
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) return 'contains a `.` or `..` segment';
  return null;
}

/**
 * Refuses host-owned headers and any CR, LF or NUL in a name or value (which
 * could smuggle another header). Returns the reason, or null if fine.
 *
 * @param {[string, string][]} headers
 */
export function headerProblem(headers) {
  for (const [name, value] of headers) {
    // Shown JSON-escaped, so a CR or LF in the name cannot break the log line.
    const shown = JSON.stringify(name).slice(1, -1);
    if (FORBIDDEN_HEADERS.has(name.toLowerCase())) return `\`${shown}\` is set by the host`;
    // An HTTP token (RFC 9110), as the Rust host requires.
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) return `\`${shown}\` is not a valid header name`;
    // Control characters but tab: CR and LF could smuggle another header.
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) {
      return `the value of \`${shown}\` contains a control character (CR, LF, NUL, …)`;
    }
  }
  return null;
}

/**
 * Percent-encodes all but RFC 3986's unreserved characters, like the Rust
 * host (`encodeURIComponent` leaves `!'()*` as they are).
 */
export const encodeQueryPart = (text) =>
  encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * `Retry-After` in milliseconds: delay-seconds (what QuickBooks sends) or an
 * HTTP date; null when absent or unreadable.
 *
 * @param {[string, string][]} headers lower-case names
 */
export function retryAfterMs(headers, now = Date.now()) {
  const value = headers.find(([name]) => name === 'retry-after')?.[1]?.trim();
  if (!value) return null;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** Exponential backoff: `baseMs × 2^(attempt-1)`, with jitter between half and all of it. */
export function backoffMs(attempt, baseMs, random = Math.random) {
  const step = baseMs * 2 ** Math.min(attempt - 1, 30);
  return step * (0.5 + random() * 0.5);
}

/**
 * How long to wait before retrying, capped at `maxWaitMs`.
 *
 * @param {{ status?: number, headers?: [string, string][], attempt: number, throttled: number,
 *           throttleWaitSecs: number, baseMs: number, maxWaitMs: number, random?: () => number }} o
 *   `attempt` is the number of the attempt that failed (1 for the first);
 *   `throttled` how many 429s in a row this request got, this one included.
 */
export function retryWaitMs({ status, headers = [], attempt, throttled, throttleWaitSecs, baseMs, maxWaitMs, random }) {
  let wait = null;
  if (status === 429 || status >= 500) wait = retryAfterMs(headers);
  // No `Retry-After` on a 429: as the component advised, doubling while throttled.
  // (Zero means the component knows no advice: backoff then.)
  if (wait === null && status === 429 && throttleWaitSecs > 0) wait = throttleWaitSecs * 1000 * 2 ** Math.min(throttled - 1, 30);
  if (wait === null) wait = backoffMs(attempt, baseMs, random);
  return Math.min(wait, maxWaitMs);
}

/**
 * Paces attempts so that no window of `windowMs` (a minute) holds more than
 * `requestsPerMinute` of them: a GCRA with a burst of b = max(1, ⌊rpm/10⌋)
 * and a steady rate of rpm - b per window (1 for rpm = 1). In any window
 * that is at most b + (rpm - b) = rpm. Zero means unlimited.
 */
export class Pacer {
  /**
   * @param {{ requestsPerMinute: number, windowMs?: number, now?: () => number, sleep?: (ms: number) => void }} o
   */
  constructor({ requestsPerMinute, windowMs = 60_000, now = () => performance.now(), sleep = sleepSync }) {
    this.now = now;
    this.sleep = sleep;
    this.unlimited = !(requestsPerMinute > 0);
    if (this.unlimited) return;
    const burst = Math.max(1, Math.floor(requestsPerMinute / 10));
    this.burst = burst;
    /** Time between two tokens at the steady rate. */
    this.intervalMs = windowMs / Math.max(1, requestsPerMinute - burst);
    /** How far ahead of now the theoretical arrival time may run: the burst. */
    this.toleranceMs = (burst - 1) * this.intervalMs;
    /** Theoretical arrival time of the next attempt. */
    this.tat = -Infinity;
  }

  /** Takes a token, sleeping until one is free. Returns how long it slept (ms). */
  acquire() {
    if (this.unlimited) return 0;
    let now = this.now();
    const tat = Math.max(this.tat, now);
    const allowedAt = tat - this.toleranceMs;
    let slept = 0;
    if (allowedAt > now) {
      slept = allowedAt - now;
      this.sleep(slept);
      now = this.now();
    }
    this.tat = tat + this.intervalMs;
    return slept;
  }
}

/**
 * @param {{ baseUrl: string, token: string | undefined,
 *           policy?: Partial<typeof DEFAULT_POLICY>,
 *           limits?: { requestsPerMinute: number, throttleWaitSecs: number },
 *           log: (level: string, message: string) => void, paceWindowMs?: number }} options
 *   `limits` may be filled in later with `setLimits` (from the component's `describe`).
 *   `paceWindowMs` is the pacing window, a minute (shorter only in tests).
 */
export function createProxy({ baseUrl, token, policy = {}, limits, log, paceWindowMs = 60_000 }) {
  const base = baseUrl.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) throw new Error(`base URL \`${base}\` must start with http:// or https://`);
  const { budgetMs, maxWaitMs, baseMs, timeoutMs } = { ...DEFAULT_POLICY, ...policy };
  const http = new BlockingFetch();
  let throttleWaitSecs = 0;
  let pacer = new Pacer({ requestsPerMinute: 0 });
  const setLimits = ({ requestsPerMinute, throttleWaitSecs: advice }) => {
    throttleWaitSecs = advice;
    pacer = new Pacer({ requestsPerMinute, windowMs: paceWindowMs });
  };
  if (limits) setLimits(limits);

  const attempt = (request, url) => {
    const headers = [...request.headers, ['authorization', `Bearer ${token}`]];
    const reply = http.request({
      url,
      method: request.method.toUpperCase(),
      headers,
      body: request.body,
      timeoutMs,
      maxBodyBytes: MAX_BODY_BYTES,
    });
    // Over a limit of the host: the run stops (a trap), naming the limit.
    if (!reply.ok && reply.kind === 'limit') throw new Error(reply.message);
    if (!reply.ok) return { error: new WitError(reply.kind, reply.message), invalid: reply.invalid === true };
    return { response: { status: reply.status, headers: reply.headers, body: new Uint8Array(reply.body) } };
  };

  /** `proxy.send`: returns the response, or throws a `WitError` for the WIT `error` variant. */
  const send = (request) => {
    const problem = pathProblem(request.path);
    if (problem) throw new WitError('invalid-path', `\`${request.path}\` ${problem}`);
    const headerIssue = headerProblem(request.headers);
    if (headerIssue) throw new WitError('forbidden-header', headerIssue);
    // Checked per request, not at start-up, so `describe`-only uses need no token.
    if (!token) throw new WitError('unauthorized', 'the connection has no access token (set QBO_ACCESS_TOKEN)');

    const query = request.query.map(([k, v]) => `${encodeQueryPart(k)}=${encodeQueryPart(v)}`).join('&');
    const url = `${base}${request.path}${query ? `?${query}` : ''}`;
    const what = `${request.method.toUpperCase()} ${request.path}`;
    const deadline = performance.now() + budgetMs;
    let throttled = 0;
    for (let attempts = 1; ; attempts++) {
      pacer.acquire();
      const outcome = attempt(request, url);
      const status = outcome.response?.status;
      const retryable =
        request.retry && (outcome.error ? !outcome.invalid : status === 429 || (status >= 500 && status <= 599));
      const finish = () => {
        if (outcome.error) throw outcome.error;
        return { ...outcome.response, attempts };
      };
      if (!retryable) return finish();
      // Counts 429s without Retry-After in a row, as the Rust host does.
      throttled = status === 429 && retryAfterMs(outcome.response.headers) === null ? throttled + 1 : 0;
      const wait = retryWaitMs({ status, headers: outcome.response?.headers, attempt: attempts, throttled, throttleWaitSecs, baseMs, maxWaitMs });
      const why = outcome.error ? outcome.error.message : `provider answered ${status}`;
      if (performance.now() + wait > deadline) {
        log('warn', `${what}: ${why}; not retrying: a wait of ${Math.round(wait)} ms would pass the ${budgetMs / 1000} s retry budget (${attempts} attempts made)`);
        return finish();
      }
      log('warn', `${what}: ${why}; retry ${attempts} in ${Math.round(wait)} ms`);
      sleepSync(wait);
    }
  };

  return { wit: { send }, setLimits, close: () => http.close() };
}
