import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Worker } from 'node:worker_threads';

import { backoffMs, createProxy, encodeQueryPart, Pacer, retryAfterMs, retryWaitMs } from '../src/proxy.mjs';

test('queries are encoded like the Rust host', () => {
  assert.equal(encodeQueryPart("select * from Customer where x = 'a'"), 'select%20%2A%20from%20Customer%20where%20x%20%3D%20%27a%27');
  assert.equal(encodeQueryPart('a-b_c.d~é!()'), 'a-b_c.d~%C3%A9%21%28%29');
});

test('Retry-After in seconds and dates; backoff doubles with jitter between half and all', () => {
  assert.equal(retryAfterMs([['retry-after', '2']]), 2000);
  assert.equal(retryAfterMs([['retry-after', 'Wed, 21 Oct 2015 07:28:00 GMT']]), 0);
  assert.equal(retryAfterMs([['retry-after', new Date(Date.now() + 10_000).toUTCString()]], Date.now()) > 8000, true);
  assert.equal(retryAfterMs([['retry-after', 'soon']]), null);
  assert.equal(retryAfterMs([]), null);
  assert.equal(backoffMs(1, 250, () => 0), 125);
  assert.equal(backoffMs(1, 250, () => 1), 250);
  assert.equal(backoffMs(3, 250, () => 0), 500);
  assert.equal(backoffMs(3, 250, () => 1), 1000);
});

test('the wait before a retry: Retry-After on 429 and any 5xx, throttle advice doubling on 429, else backoff; all capped', () => {
  const base = { attempt: 1, throttled: 0, throttleWaitSecs: 60, baseMs: 250, maxWaitMs: 120_000, random: () => 1 };
  const ra = [['retry-after', '7']];
  assert.equal(retryWaitMs({ ...base, status: 429, headers: ra, throttled: 1 }), 7000);
  for (const status of [500, 502, 503, 504]) {
    assert.equal(retryWaitMs({ ...base, status, headers: ra, attempt: 3 }), 7000, `Retry-After on a ${status}`);
  }
  // A 5xx without Retry-After: backoff, with jitter.
  assert.equal(retryWaitMs({ ...base, status: 500, attempt: 2 }), 500);
  assert.equal(retryWaitMs({ ...base, status: 502, attempt: 1, random: () => 0 }), 125);
  // 429 without Retry-After: throttle-wait-secs × 2^(k-1), no jitter.
  assert.equal(retryWaitMs({ ...base, status: 429, throttled: 1, random: () => 0 }), 60_000);
  assert.equal(retryWaitMs({ ...base, status: 429, throttled: 2, attempt: 5 }), 120_000);
  assert.equal(retryWaitMs({ ...base, status: 429, throttled: 3 }), 120_000, 'capped at the max wait');
  assert.equal(retryWaitMs({ ...base, status: 429, throttled: 2, maxWaitMs: 1e9 }), 120_000);
  assert.equal(retryWaitMs({ ...base, status: 429, throttled: 3, maxWaitMs: 1e9 }), 240_000);
  // No advice from the component (0): backoff.
  assert.equal(retryWaitMs({ ...base, status: 429, throttled: 1, throttleWaitSecs: 0, attempt: 3 }), 1000);
  // Errors (no status) back off; the cap applies to Retry-After too.
  assert.equal(retryWaitMs({ ...base, attempt: 4 }), 2000);
  assert.equal(retryWaitMs({ ...base, attempt: 40 }), 120_000);
  assert.equal(retryWaitMs({ ...base, status: 503, headers: [['retry-after', '3600']] }), 120_000);
});

/** The largest number of `times` (ms) inside any window [t, t + windowMs). */
const busiestWindow = (times, windowMs) => {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[j] <= sorted[i] - windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
};

test('pacing: a burst of rpm/10, then the steady rate; no minute ever holds more than rpm', () => {
  for (const rpm of [1, 2, 7, 10, 100, 500]) {
    let clock = 0;
    const times = [];
    const pacer = new Pacer({ requestsPerMinute: rpm, now: () => clock, sleep: (ms) => { clock += ms; } });
    for (let i = 0; i < 5 * rpm + 20; i++) {
      pacer.acquire();
      times.push(clock);
      clock += i % 7 === 0 ? 3000 : 0; // now and then the caller is slow
    }
    assert.ok(busiestWindow(times, 60_000) <= rpm, `rpm ${rpm}: ${busiestWindow(times, 60_000)} in one minute`);
    const burst = Math.max(1, Math.floor(rpm / 10));
    assert.equal(pacer.burst, burst);
  }
  // Idle callers earn the burst back, never more.
  let clock = 0;
  const pacer = new Pacer({ requestsPerMinute: 100, now: () => clock, sleep: (ms) => { clock += ms; } });
  for (let i = 0; i < 10; i++) assert.equal(pacer.acquire(), 0, 'the first 10 go at once');
  assert.ok(pacer.acquire() > 0, 'the 11th waits');
  clock += 3_600_000;
  for (let i = 0; i < 10; i++) assert.equal(pacer.acquire(), 0);
  assert.ok(Math.abs(pacer.acquire() - 60_000 / 90) < 1e-6, 'then one every minute / (rpm - burst)');
  // Zero is unlimited.
  const free = new Pacer({ requestsPerMinute: 0, now: () => 0, sleep: () => assert.fail('no sleep') });
  for (let i = 0; i < 1000; i++) free.acquire();
});

// The server runs in a worker: the proxy blocks this thread while it waits.
// It records every request it gets (when, on its monotonic clock, and which path):
// `GET /_log` answers them and starts afresh.
let server;
let baseUrl;
before(async () => {
  server = new Worker(
    `
    const { parentPort } = require('node:worker_threads');
    const counters = new Map();
    const next = (key) => { const n = (counters.get(key) ?? 0) + 1; counters.set(key, n); return n; };
    let seen = [];
    const srv = require('node:http').createServer((req, res) => {
      const url = new URL(req.url, 'http://x');
      const [, kind, key] = url.pathname.split('/');
      if (kind === '_log') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(seen));
        seen = [];
        return;
      }
      seen.push({ t: Number(process.hrtime.bigint() / 1000n) / 1000, path: url.pathname });
      if (kind === 'flaky') {
        // 429, 503 (both with Retry-After: 0), then 200, in turn, per key.
        const n = next(key) % 3;
        if (n !== 0) {
          res.writeHead(n === 1 ? 429 : 503, { 'retry-after': '0' });
          return res.end('busy');
        }
      }
      if (kind === 'status') {
        const headers = url.searchParams.has('ra') ? { 'retry-after': url.searchParams.get('ra') } : {};
        res.writeHead(Number(key), headers);
        return res.end('status ' + key);
      }
      if (kind === 'throttle' && next(key) <= Number(url.searchParams.get('n'))) {
        res.writeHead(429);
        return res.end('throttled');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url }));
    });
    srv.listen(0, '127.0.0.1', () => parentPort.postMessage(srv.address().port));
    `,
    { eval: true },
  );
  const port = await new Promise((resolve) => server.once('message', resolve));
  baseUrl = `http://127.0.0.1:${port}/`;
});
after(() => server.terminate());

/** What the server got since the last call: [{ t (ms), path }]. */
const serverLog = async () => (await fetch(`${baseUrl}_log`)).json();

const request = (over) => ({ method: 'get', path: '/x', query: [], headers: [], body: undefined, retry: false, ...over });
const tagOf = (fn) => {
  try {
    fn();
  } catch (error) {
    return error.payload?.tag;
  }
  return 'no error';
};
const timed = (fn) => {
  const start = performance.now();
  const value = fn();
  return [value, performance.now() - start];
};
const proxyWith = (over = {}) => createProxy({ baseUrl, token: 't', log: () => {}, ...over });

/**
 * The proxy's retry log, read: the waits of the retries it made (`… retry k in W ms`, in
 * order) and, if it gave up, the wait it refused and the attempts it said it made.
 * (createProxy takes no clock: these, and what the server saw, are what a test can check
 * without a stopwatch; a wall-clock bound stays only where it is the behaviour itself, a
 * lower bound that load can only make longer.)
 */
const readRetries = (logs) => {
  const waits = [];
  let refused = null;
  for (const [i, m] of logs.entries()) {
    const made = m.match(/; retry (\d+) in (\d+) ms$/);
    if (made) {
      assert.equal(Number(made[1]), waits.length + 1, `retries numbered in order: ${m}`);
      waits.push(Number(made[2]));
      continue;
    }
    const stop = m.match(/; not retrying: a wait of (\d+) ms would pass the ([\d.]+) s retry budget \((\d+) attempts made\)$/);
    assert.ok(stop && i === logs.length - 1, `the last line, and only it, gives up: ${m}`);
    refused = { wait: Number(stop[1]), budgetSecs: Number(stop[2]), attempts: Number(stop[3]) };
  }
  return { waits, refused, total: waits.reduce((a, b) => a + b, 0) };
};

/** Each wait of a backoff with base `baseMs`: baseMs × 2^(k-1) with jitter between half and all (logged rounded). */
const assertBackoff = (waits, baseMs) =>
  waits.forEach((w, k) => {
    const step = baseMs * 2 ** k;
    assert.ok(w >= Math.floor(step / 2) && w <= step, `retry ${k + 1} waited ${w} ms, outside ${step / 2}-${step}`);
  });

test('on the wire, the query is encoded and joined like the Rust host', () => {
  const proxy = proxyWith();
  try {
    const response = proxy.wit.send(request({ path: '/v3/q', query: [['query', "a b='c'"], ['minorversion', '75']] }));
    assert.equal(JSON.parse(Buffer.from(response.body)).url, '/v3/q?query=a%20b%3D%27c%27&minorversion=75');
  } finally {
    proxy.close();
  }
});

test('with `retry`, 429 and 5xx are retried, each retry logged; other statuses are not', async () => {
  const logs = [];
  const proxy = proxyWith({ policy: { baseMs: 1 }, log: (_, m) => logs.push(m) });
  await serverLog(); // start afresh
  try {
    const retried = proxy.wit.send(request({ path: '/flaky/a', retry: true }));
    assert.deepEqual([retried.status, retried.attempts], [200, 3]);
    assert.equal(logs.length, 2);
    assert.match(logs[0], /^GET \/flaky\/a: provider answered 429; retry 1 in 0 ms$/, 'Retry-After: 0 is honoured');
    assert.match(logs[1], /^GET \/flaky\/a: provider answered 503; retry 2 in 0 ms$/);
    const notRetryable = proxy.wit.send(request({ path: '/status/404', retry: true }));
    assert.deepEqual([notRetryable.status, notRetryable.attempts], [404, 1]);
    assert.equal(logs.length, 2, 'a 404 is neither retried nor logged');
    const once = proxy.wit.send(request({ path: '/status/503' }));
    assert.deepEqual([once.status, once.attempts], [503, 1], 'without `retry`, a 503 is not retried');
  } finally {
    proxy.close();
  }
  const paths = (await serverLog()).map((r) => r.path);
  assert.deepEqual(paths, ['/flaky/a', '/flaky/a', '/flaky/a', '/status/404', '/status/503']);
});

test('retries stop at the time budget and return the last answer', async () => {
  const logs = [];
  const proxy = proxyWith({ policy: { budgetMs: 400, baseMs: 50, maxWaitMs: 10_000 }, log: (_, m) => logs.push(m) });
  try {
    proxy.wit.send(request()); // the HTTP worker is up before anything is measured
    await serverLog();
    // Backoff 25-50, 50-100, 100-200, 200-400, 400-800 ms: at most 5 attempts fit in 400 ms.
    const [spent, ms] = timed(() => proxy.wit.send(request({ path: '/status/503', retry: true })));
    assert.equal(spent.status, 503, 'the last answer');
    const { waits, refused, total } = readRetries(logs);
    assert.ok(waits.length >= 1, 'a 503 is retried');
    assert.equal(waits.length, spent.attempts - 1, 'every retry made is logged');
    assertBackoff(waits, 50);
    assert.ok(spent.attempts <= 5, `${spent.attempts} attempts: the smallest waits of 5 retries already pass 400 ms`);
    assert.deepEqual([refused?.budgetSecs, refused?.attempts], [0.4, spent.attempts], 'it stops on the budget, saying so');
    assertBackoff([...waits, refused.wait], 50); // the refused one too
    assert.ok(total <= 400 + waits.length, `the waits it made (${total} ms) fit in the budget`);
    // Lower bounds only (load can only make them longer): it slept what it logged, and it
    // stopped because the next wait would have ended past the budget.
    assert.ok(ms >= total - waits.length, `slept ${total} ms in all, took ${ms} ms`);
    assert.ok(ms + refused.wait + 1 > 400, `${ms} ms spent + a wait of ${refused.wait} ms is within the budget`);
    assert.deepEqual((await serverLog()).map((r) => r.path), Array(spent.attempts).fill('/status/503'));

    // A Retry-After beyond the budget, on a 429 or any 5xx: no retry at all, and no wait.
    for (const status of [429, 502]) {
      logs.length = 0;
      const answer = proxy.wit.send(request({ path: `/status/${status}`, query: [['ra', '5']], retry: true }));
      assert.deepEqual([answer.status, answer.attempts], [status, 1]);
      const { waits: made, refused: gaveUp } = readRetries(logs);
      assert.deepEqual([made, gaveUp], [[], { wait: 5000, budgetSecs: 0.4, attempts: 1 }], `${status}: ${logs}`);
    }
    assert.deepEqual((await serverLog()).map((r) => r.path), ['/status/429', '/status/502']);
  } finally {
    proxy.close();
  }
});

test('Retry-After is capped by the max wait', async () => {
  const logs = [];
  const capped = proxyWith({ policy: { budgetMs: 1000, maxWaitMs: 100 }, log: (_, m) => logs.push(m) });
  try {
    capped.wit.send(request());
    await serverLog();
    const [answer, ms] = timed(() => capped.wit.send(request({ path: '/status/503', query: [['ra', '3']], retry: true })));
    assert.equal(answer.status, 503);
    const { waits, refused } = readRetries(logs);
    assert.ok(waits.length >= 1, 'retried');
    assert.deepEqual(waits, Array(answer.attempts - 1).fill(100), 'each wait is the max wait, not the 3 s asked');
    assert.deepEqual(refused, { wait: 100, budgetSecs: 1, attempts: answer.attempts });
    assert.ok(answer.attempts <= 10, `${answer.attempts} attempts: ten waits of 100 ms pass the 1 s budget`);
    assert.ok(ms >= 100 * waits.length - waits.length, `waited 100 ms ${waits.length} times, took ${ms} ms`);
    assert.equal((await serverLog()).length, answer.attempts);
  } finally {
    capped.close();
  }
});

test('a 429 without Retry-After waits as the component advised, doubling while throttled', async () => {
  const logs = [];
  const proxy = proxyWith({ policy: { baseMs: 1 }, limits: { requestsPerMinute: 0, throttleWaitSecs: 0.1 }, log: (_, m) => logs.push(m) });
  await serverLog();
  try {
    const [answer, ms] = timed(() => proxy.wit.send(request({ path: '/throttle/k', query: [['n', '2']], retry: true })));
    assert.deepEqual([answer.status, answer.attempts], [200, 3]);
    assert.deepEqual(logs, [
      'GET /throttle/k: provider answered 429; retry 1 in 100 ms',
      'GET /throttle/k: provider answered 429; retry 2 in 200 ms',
    ]);
    assert.ok(ms >= 299, `waited 100 + 200 ms, took ${ms} ms`);
  } finally {
    proxy.close();
  }
  // On the server's clock: the retries came at least 100 and then 200 ms after the 429s.
  const seen = await serverLog();
  assert.deepEqual(seen.map((r) => r.path), ['/throttle/k', '/throttle/k', '/throttle/k']);
  assert.ok(seen[1].t - seen[0].t >= 99, `first retry ${seen[1].t - seen[0].t} ms after the 429`);
  assert.ok(seen[2].t - seen[1].t >= 199, `second retry ${seen[2].t - seen[1].t} ms after the second 429`);
});

test('a missing token is `unauthorized`; connection failures are errors, retried within the budget', () => {
  const anonymous = proxyWith({ token: undefined });
  const logs = [];
  const nowhere = createProxy({ baseUrl: 'http://127.0.0.1:9/', token: 't', policy: { baseMs: 10, budgetMs: 500 }, log: (_, m) => logs.push(m) });
  try {
    assert.equal(tagOf(() => anonymous.wit.send(request())), 'unauthorized');
    // Without `retry`: one attempt, no retry logged (this also starts the HTTP worker).
    assert.equal(tagOf(() => nowhere.wit.send(request())), 'connection-failed');
    assert.deepEqual(logs, []);
    const [tag, ms] = timed(() => tagOf(() => nowhere.wit.send(request({ retry: true }))));
    assert.equal(tag, 'connection-failed', 'the last error is thrown');
    const { waits, refused, total } = readRetries(logs);
    assert.ok(waits.length >= 1, 'a failed connection is retried');
    assertBackoff(waits, 10);
    assert.ok(logs.every((m) => m.startsWith('GET /x: ')), logs.join('\n'));
    assert.deepEqual([refused?.budgetSecs, refused?.attempts], [0.5, waits.length + 1], 'it stops on the budget');
    assert.ok(total <= 500 + waits.length, `the waits it made (${total} ms) fit in the budget`);
    assert.ok(ms + refused.wait + 1 > 500, 'it stopped because the next wait would pass the budget');
  } finally {
    anonymous.close();
    nowhere.close();
  }
});

test('on the wire, every attempt (retries too) is paced: no window holds more than rpm attempts', async () => {
  const windowMs = 500;
  const rpm = 20;
  const proxy = proxyWith({ paceWindowMs: windowMs, limits: { requestsPerMinute: rpm, throttleWaitSecs: 0 } });
  await serverLog(); // start afresh
  const start = performance.now();
  try {
    // Each request takes three attempts (429, 503, 200): 36 paced attempts.
    for (let i = 0; i < 12; i++) assert.equal(proxy.wit.send(request({ path: '/flaky/paced', retry: true })).status, 200);
  } finally {
    proxy.close();
  }
  const elapsed = performance.now() - start;
  const seen = await serverLog();
  assert.deepEqual(seen.map((r) => r.path), Array(36).fill('/flaky/paced'));
  const busiest = busiestWindow(seen.map((r) => r.t), windowMs);
  assert.ok(busiest <= rpm, `${busiest} attempts in one window`);
  // A burst of max(1, rpm/10) = 2, then one attempt every windowMs / (rpm - 2): the 36th attempt
  // cannot start before 34 intervals have passed. (Were retries not paced, the 12 first attempts
  // alone would be: 10 intervals.) A lower bound: load can only make it longer.
  const interval = windowMs / (rpm - 2);
  assert.ok(elapsed >= 34 * interval - 5, `36 paced attempts took ${elapsed} ms, less than 34 × ${interval} ms`);
});
