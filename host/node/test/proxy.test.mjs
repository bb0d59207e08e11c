import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Worker } from 'node:worker_threads';

import { backoffMs, createProxy, encodeQueryPart, pathProblem, retryAfterMs } from '../src/proxy.mjs';

test('only plain relative paths pass', () => {
  assert.equal(pathProblem('/v3/company/123/query'), null);
  for (const bad of [
    'https://evil.example/v3', 'v3/company', '//evil.example/x', '/v3/../../admin', '/v3/./x', '/v3/%2e%2e/admin',
    '/v3/%2F/x', '/v3\\..\\x', '/v3/q?x=1', '/v3#frag', '/v3/a b', '/v3/\u0000',
  ]) {
    assert.notEqual(pathProblem(bad), null, `${bad} must be refused`);
  }
});

test('queries are encoded like the Rust host', () => {
  assert.equal(encodeQueryPart("select * from Customer where x = 'a'"), 'select%20%2A%20from%20Customer%20where%20x%20%3D%20%27a%27');
  assert.equal(encodeQueryPart('a-b_c.d~é!()'), 'a-b_c.d~%C3%A9%21%28%29');
});

test('Retry-After in seconds and dates; backoff grows and is capped', () => {
  assert.equal(retryAfterMs([['retry-after', '2']]), 2000);
  assert.equal(retryAfterMs([['retry-after', 'Wed, 21 Oct 2015 07:28:00 GMT']]), 0);
  assert.equal(retryAfterMs([]), null);
  assert.ok(backoffMs(1, 250) <= 250 && backoffMs(3, 250) >= 500 && backoffMs(40, 250) <= 60_000);
});

// The server runs in a worker: the proxy blocks this thread while it waits.
let server;
let baseUrl;
before(async () => {
  server = new Worker(
    `
    const { parentPort } = require('node:worker_threads');
    // /flaky answers 429, 503, then 200, in turn.
    let flaky = 0;
    const srv = require('node:http').createServer((req, res) => {
      if (req.url.startsWith('/flaky') && ++flaky % 3 !== 0) {
        res.writeHead(flaky % 3 === 1 ? 429 : 503, { 'retry-after': '0' });
        return res.end('busy');
      }
      res.writeHead(200, { 'content-type': 'application/json', 'X-Echo': 'yes' });
      res.end(JSON.stringify({ url: req.url, auth: req.headers.authorization, method: req.method }));
    });
    srv.listen(0, '127.0.0.1', () => parentPort.postMessage(srv.address().port));
    `,
    { eval: true },
  );
  const port = await new Promise((resolve) => server.once('message', resolve));
  baseUrl = `http://127.0.0.1:${port}/`;
});
after(() => server.terminate());

const request = (over) => ({ method: 'get', path: '/x', query: [], headers: [], body: undefined, maxRetries: 0, ...over });
const tagOf = (fn) => {
  try {
    fn();
  } catch (error) {
    return error.payload?.tag;
  }
  return 'no error';
};

test('sends with the bearer token and the encoded query; lower-case headers', () => {
  const proxy = createProxy({ baseUrl, token: 'secret', log: () => {} });
  try {
    const response = proxy.wit.send(request({ path: '/v3/q', query: [['query', 'a b'], ['minorversion', '75']] }));
    assert.equal(response.status, 200);
    assert.equal(response.attempts, 1);
    assert.ok(response.headers.some(([k, v]) => k === 'x-echo' && v === 'yes'));
    assert.deepEqual(JSON.parse(Buffer.from(response.body)), { url: '/v3/q?query=a%20b&minorversion=75', auth: 'Bearer secret', method: 'GET' });
  } finally {
    proxy.close();
  }
});

test('retries 429 and 5xx, and returns the last answer once retries are spent', () => {
  const logs = [];
  const proxy = createProxy({ baseUrl, token: 't', retryBaseMs: 1, log: (_, m) => logs.push(m) });
  try {
    assert.equal(proxy.wit.send(request({ path: '/flaky', maxRetries: 5 })).attempts, 3);
    const spent = proxy.wit.send(request({ path: '/flaky', maxRetries: 1 }));
    assert.deepEqual([spent.status, spent.attempts], [503, 2]);
    assert.equal(logs.length, 3);
  } finally {
    proxy.close();
  }
});

test('refuses bad paths, host-owned headers and a missing token; connection failures are errors', () => {
  const proxy = createProxy({ baseUrl, token: 't', retryBaseMs: 1, log: () => {} });
  const anonymous = createProxy({ baseUrl, token: undefined, log: () => {} });
  const nowhere = createProxy({ baseUrl: 'http://127.0.0.1:9/', token: 't', retryBaseMs: 1, log: () => {} });
  try {
    assert.equal(tagOf(() => proxy.wit.send(request({ path: 'https://evil.example/' }))), 'invalid-path');
    assert.equal(tagOf(() => proxy.wit.send(request({ headers: [['Authorization', 'Bearer x']] }))), 'forbidden-header');
    assert.equal(tagOf(() => proxy.wit.send(request({ headers: [['HOST', 'evil']] }))), 'forbidden-header');
    assert.equal(tagOf(() => anonymous.wit.send(request())), 'unauthorized');
    assert.equal(tagOf(() => nowhere.wit.send(request({ maxRetries: 1 }))), 'connection-failed');
  } finally {
    proxy.close();
    anonymous.close();
    nowhere.close();
  }
});
