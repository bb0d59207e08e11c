/**
 * The worker half of `blocking-fetch.mjs`: performs one HTTP attempt with
 * `fetch` on its own event loop while the main thread is blocked in
 * `Atomics.wait`, then posts the answer and wakes the main thread.
 *
 * It only does I/O: retries, backoff and error policy stay on the main thread.
 */
import { workerData } from 'node:worker_threads';

const { port, signal } = workerData;

port.on('message', async ({ id, url, method, headers, body, timeoutMs, maxBodyBytes }) => {
  let reply;
  let transfer = [];
  try {
    const response = await fetch(url, {
      method,
      headers,
      body,
      // Like the Rust host: never follow a redirect off the provider's base URL.
      redirect: 'manual',
      // Covers connecting, the headers and reading the body.
      signal: AbortSignal.timeout(timeoutMs),
    });
    const declared = Number(response.headers.get('content-length') ?? 0);
    if (declared > maxBodyBytes) {
      await response.body?.cancel();
      throw Object.assign(new Error(`response body of ${declared} bytes is over the host's limit of ${maxBodyBytes} bytes per response`), {
        code: 'EBODYTOOLARGE',
      });
    }
    const bytes = await response.arrayBuffer();
    if (bytes.byteLength > maxBodyBytes) {
      throw Object.assign(new Error(`response body is over the host's limit of ${maxBodyBytes} bytes per response`), {
        code: 'EBODYTOOLARGE',
      });
    }
    reply = {
      ok: true,
      status: response.status,
      // `Headers` iterates with lower-case names, as the WIT asks.
      headers: [...response.headers],
      body: bytes,
    };
    transfer = [bytes];
  } catch (error) {
    reply = { ok: false, ...classify(error, timeoutMs) };
  }
  port.postMessage({ ...reply, id }, transfer);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
});

/**
 * Maps a `fetch` failure onto the WIT's `timeout` / `connection-failed`, or
 * `limit` for a body over the host's limit (which stops the run).
 */
function classify(error, timeoutMs) {
  if (error?.code === 'EBODYTOOLARGE') return { kind: 'limit', message: error.message };
  if (error?.name === 'TimeoutError' || error?.name === 'AbortError') {
    return { kind: 'timeout', message: `no response within ${timeoutMs} ms` };
  }
  // undici says "fetch failed" and puts the useful part (ECONNREFUSED, ...) in `cause`.
  const cause = error?.cause;
  const code = cause?.code ?? error?.code;
  const detail = [code, cause?.message ?? error?.message].filter(Boolean).join(': ');
  // A request that cannot be sent as given fails the same way every time:
  // never retried (the header checks let nothing like that through).
  const invalid = code === 'UND_ERR_INVALID_ARG' || (error instanceof TypeError && !cause);
  return { kind: 'connection-failed', message: detail || String(error), invalid };
}
