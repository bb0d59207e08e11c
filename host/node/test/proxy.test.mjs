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
let server;
let baseUrl;
before(async () => {
  server = new Worker(
    `
    const { parentPort } = require('node:worker_threads');
    const counters = new Map();
    const next = (key) => { const n = (counters.get(key) ?? 0) + 1; counters.set(key, n); return n; };
    let times = [];
    const srv = require('node:http').createServer((req, res) => {
      const url = new URL(req.url, 'http://x');
      const [, kind, key] = url.pathname.split('/');
      if (kind === '_times') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(times));
        times = [];
        return;
      }
      times.push(Number(process.hrtime.bigint() / 1000n) / 1000);
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

test('on the wire, the query is encoded and joined like the Rust host', () => {
  const proxy = proxyWith();
  try {
    const response = proxy.wit.send(request({ path: '/v3/q', query: [['query', "a b='c'"], ['minorversion', '75']] }));
    assert.equal(JSON.parse(Buffer.from(response.body)).url, '/v3/q?query=a%20b%3D%27c%27&minorversion=75');
  } finally {
    proxy.close();
  }
});

test('with `retry`, 429 and 5xx are retried, each retry logged; other statuses are not', () => {
  const logs = [];
  const proxy = proxyWith({ policy: { baseMs: 1 }, log: (_, m) => logs.push(m) });
  try {
    const retried = proxy.wit.send(request({ path: '/flaky/a', retry: true }));
    assert.deepEqual([retried.status, retried.attempts], [200, 3]);
    assert.equal(logs.length, 2);
    const notRetryable = proxy.wit.send(request({ path: '/status/404', retry: true }));
    assert.deepEqual([notRetryable.status, notRetryable.attempts], [404, 1]);
  } finally {
    proxy.close();
  }
});

test('retries stop at the time budget and return the last answer', () => {
  const proxy = proxyWith({ policy: { budgetMs: 400, baseMs: 50, maxWaitMs: 10_000 } });
  try {
    // Backoff 25-50, 50-100, 100-200, 200-400 ms: the budget ends it after 3 or 4 attempts.
    const [spent, ms] = timed(() => proxy.wit.send(request({ path: '/status/503', retry: true })));
    assert.equal(spent.status, 503);
    assert.ok(spent.attempts >= 3 && spent.attempts <= 5, `${spent.attempts} attempts`);
    assert.ok(ms < 400 + 150, `took ${ms} ms`);
    // A Retry-After beyond the budget, on a 429 or any 5xx: no retry at all.
    for (const status of [429, 502]) {
      const [answer, took] = timed(() => proxy.wit.send(request({ path: `/status/${status}`, query: [['ra', '5']], retry: true })));
      assert.deepEqual([answer.status, answer.attempts], [status, 1]);
      assert.ok(took < 300, `${status}: took ${took} ms`);
    }
  } finally {
    proxy.close();
  }
  // Retry-After is capped by the max wait.
  const capped = proxyWith({ policy: { budgetMs: 350, maxWaitMs: 100 } });
  try {
    const [answer, ms] = timed(() => capped.wit.send(request({ path: '/status/503', query: [['ra', '3']], retry: true })));
    assert.equal(answer.status, 503);
    assert.ok(answer.attempts >= 3 && answer.attempts <= 4, `${answer.attempts} attempts`);
    assert.ok(ms >= 200 && ms < 350 + 150, `took ${ms} ms`);
  } finally {
    capped.close();
  }
});

test('a 429 without Retry-After waits as the component advised, doubling while throttled', () => {
  const proxy = proxyWith({ policy: { baseMs: 1 }, limits: { requestsPerMinute: 0, throttleWaitSecs: 0.1 } });
  try {
    const [answer, ms] = timed(() => proxy.wit.send(request({ path: '/throttle/k', query: [['n', '2']], retry: true })));
    assert.deepEqual([answer.status, answer.attempts], [200, 3]);
    assert.ok(ms >= 300 && ms < 1000, `waited 100 + 200 ms, took ${ms} ms`);
  } finally {
    proxy.close();
  }
});

test('a missing token is `unauthorized`; connection failures are errors, retried within the budget', () => {
  const anonymous = proxyWith({ token: undefined });
  const nowhere = createProxy({ baseUrl: 'http://127.0.0.1:9/', token: 't', policy: { baseMs: 10, budgetMs: 200 }, log: () => {} });
  try {
    assert.equal(tagOf(() => anonymous.wit.send(request())), 'unauthorized');
    const [tag, ms] = timed(() => tagOf(() => nowhere.wit.send(request({ retry: true }))));
    assert.equal(tag, 'connection-failed');
    assert.ok(ms < 200 + 500, `retried within the budget, took ${ms} ms`);
    assert.equal(tagOf(() => nowhere.wit.send(request())), 'connection-failed');
  } finally {
    anonymous.close();
    nowhere.close();
  }
});

test('on the wire, every attempt (retries too) is paced: no window holds more than rpm attempts', async () => {
  const windowMs = 500;
  const rpm = 20;
  const proxy = proxyWith({ paceWindowMs: windowMs, limits: { requestsPerMinute: rpm, throttleWaitSecs: 0 } });
  await fetch(`${baseUrl}_times`); // reset
  try {
    // Each request takes three attempts (429, 503, 200): 36 paced attempts.
    for (let i = 0; i < 12; i++) assert.equal(proxy.wit.send(request({ path: '/flaky/paced', retry: true })).status, 200);
  } finally {
    proxy.close();
  }
  const times = await (await fetch(`${baseUrl}_times`)).json();
  assert.equal(times.length, 36);
  const busiest = busiestWindow(times, windowMs);
  assert.ok(busiest <= rpm, `${busiest} attempts in one window`);
  assert.ok(busiest >= rpm - 3, `the pacing lets close to rpm through (${busiest})`);
});
