/**
 * The proxy capability: the guest's only way to the network.
 *
 * The host owns the base URL and the bearer token; the guest gives a path
 * relative to the base URL. Paths that could escape it and host-owned headers
 * are refused here, and retries (429, 5xx, connection failures) happen here,
 * with exponential backoff, jitter and `Retry-After`, as in the Rust host.
 */
import { WitError } from './errors.mjs';
import { BlockingFetch, sleepSync } from './blocking-fetch.mjs';

/** Headers only the host sets. */
const FORBIDDEN_HEADERS = new Set(['authorization', 'proxy-authorization', 'host', 'cookie']);
/** The host's cap on retries, whatever the guest asks for. */
export const MAX_RETRIES_CAP = 8;
/** Longest wait before a retry, `Retry-After` included. */
const MAX_BACKOFF_MS = 60_000;
/** Largest response body accepted. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

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

/** Exponential backoff with jitter between half and all of the step. */
export function backoffMs(attempt, baseMs) {
  const step = Math.min(baseMs * 2 ** Math.min(attempt - 1, 16), MAX_BACKOFF_MS);
  return step * (0.5 + Math.random() * 0.5);
}

/**
 * @param {{ baseUrl: string, token: string | undefined, retryBaseMs?: number, timeoutMs?: number,
 *           log: (level: string, message: string) => void }} options
 */
export function createProxy({ baseUrl, token, retryBaseMs = 250, timeoutMs = 30_000, log }) {
  const base = baseUrl.replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) throw new Error(`base URL \`${base}\` must start with http:// or https://`);
  const http = new BlockingFetch();

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
    if (!reply.ok) return { error: new WitError(reply.kind, reply.message) };
    return { response: { status: reply.status, headers: reply.headers, body: new Uint8Array(reply.body) } };
  };

  /** `proxy.send`: returns the response, or throws a `WitError` for the WIT `error` variant. */
  const send = (request) => {
    const problem = pathProblem(request.path);
    if (problem) throw new WitError('invalid-path', `\`${request.path}\` ${problem}`);
    for (const [name] of request.headers) {
      if (FORBIDDEN_HEADERS.has(name.toLowerCase())) throw new WitError('forbidden-header', `\`${name}\` is set by the host`);
    }
    // Checked per request, not at start-up, so `describe`-only uses need no token.
    if (!token) throw new WitError('unauthorized', 'the connection has no access token (set QBO_ACCESS_TOKEN)');

    const query = request.query.map(([k, v]) => `${encodeQueryPart(k)}=${encodeQueryPart(v)}`).join('&');
    const url = `${base}${request.path}${query ? `?${query}` : ''}`;
    const retries = Math.min(request.maxRetries, MAX_RETRIES_CAP);
    for (let attempts = 1; ; attempts++) {
      const outcome = attempt(request, url);
      const status = outcome.response?.status;
      const retryable = outcome.error ? true : status === 429 || status >= 500;
      if (!retryable || attempts > retries) {
        if (outcome.error) throw outcome.error;
        return { ...outcome.response, attempts };
      }
      const wait = Math.min(
        (outcome.response && retryAfterMs(outcome.response.headers)) ?? backoffMs(attempts, retryBaseMs),
        MAX_BACKOFF_MS,
      );
      const why = outcome.error ? outcome.error.message : `provider answered ${status}`;
      log('warn', `${request.method.toUpperCase()} ${request.path}: ${why}; retry ${attempts} of ${retries} in ${Math.round(wait)} ms`);
      sleepSync(wait);
    }
  };

  return { wit: { send }, close: () => http.close() };
}
