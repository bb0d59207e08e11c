import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const RUN = fileURLToPath(new URL('../run.mjs', import.meta.url));

/** Runs the host's command line; what it refuses, it refuses before loading the component. */
function run(...args) {
  const result = spawnSync(process.execPath, [RUN, '--component', 'unused.wasm', '--db', 'unused.sqlite', ...args], {
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('a base URL carrying a password is refused without repeating it', () => {
  const { status, stdout, stderr } = run('--base-url', 'http://user:hunter2@127.0.0.1:1');
  assert.notEqual(status, 0);
  assert.match(stderr, /--base-url must not carry a user name or password/);
  assert.doesNotMatch(stdout + stderr, /hunter2/);
});

test('a base URL that is not http(s) is refused, naming the flag', () => {
  const { status, stderr } = run('--base-url', 'ftp://example.com');
  assert.notEqual(status, 0);
  assert.match(stderr, /--base-url `ftp:\/\/example.com` must start with http:\/\/ or https:\/\//);
});

test('a request timeout of 0 is refused instead of retrying until the budget ends', () => {
  const { status, stderr } = run('--base-url', 'http://127.0.0.1:1', '--request-timeout-secs', '0');
  assert.notEqual(status, 0);
  assert.match(stderr, /--request-timeout-secs must be more than 0/);
});
