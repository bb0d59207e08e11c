#!/usr/bin/env node
/**
 * Runs a portable-sync component once for a connection, in Node.js, like
 * `sync-host run`: the same .wasm, the same SQLite database, the same
 * one-line JSON summary.
 *
 *   QBO_ACCESS_TOKEN=... node host/node/run.mjs --component <file.wasm> \
 *     --base-url <url> --realm-id <id> --db <file.sqlite> [--connection <id>]
 */
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { createCheckpoint } from './src/checkpoint.mjs';
import { defaultCacheDir, instantiateComponent, prepareComponent } from './src/component.mjs';
import { createConfig } from './src/config.mjs';
import { createLogger } from './src/logging.mjs';
import { createProxy, DEFAULT_POLICY } from './src/proxy.mjs';
import { createRecords } from './src/records.mjs';
import { SqliteStore } from './src/store.mjs';
import { wasiImports } from './src/wasi.mjs';

/**
 * Like sync-host: an http(s) URL with a host, refused without repeating it
 * when it carries `user:password@` (it would be shown in errors and logs;
 * credentials have flags of their own).
 */
function checkBaseUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Failure(`--base-url \`${text}\` is not a URL`);
  }
  if (url.username || url.password) {
    throw new Failure('--base-url must not carry a user name or password; give credentials with their own flags');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Failure(`--base-url \`${text}\` must start with http:// or https://`);
  }
}

const USAGE = `usage: node run.mjs --component <file.wasm> --base-url <url> --db <file.sqlite>
                   [--realm-id <id>] [--config <key>=<value>]... [--connection <id>]
                   [--requests-per-minute <n>] [--retry-budget-secs <n>] [--retry-max-wait-secs <n>]
                   [--retry-base-ms <n>] [--request-timeout-secs <n>]
                   [--print-hash] [--log-level trace|debug|info|warn|error|off] [--verbose] [--cache-dir <dir>]
The access token is read from the environment variable QBO_ACCESS_TOKEN.
--realm-id <id> is short for --config realmId=<id>.`;

/** Where `cargo build --release --target wasm32-wasip2 -p quickbooks-customers` puts the guest. */
const BUILT_GUEST = 'target/wasm32-wasip2/release/quickbooks_customers.wasm';

/** A failure with its message for the one `error:` line. */
class Failure extends Error {}

function parseCommandLine(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        component: { type: 'string', default: BUILT_GUEST },
        'base-url': { type: 'string' },
        'realm-id': { type: 'string' },
        config: { type: 'string', multiple: true, default: [] },
        db: { type: 'string' },
        connection: { type: 'string', default: 'default' },
        'print-hash': { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        verbose: { type: 'boolean', short: 'v', default: false },
        'cache-dir': { type: 'string', default: defaultCacheDir() },
        'request-timeout-secs': { type: 'string', default: String(DEFAULT_POLICY.timeoutMs / 1000) },
        'retry-base-ms': { type: 'string', default: String(DEFAULT_POLICY.baseMs) },
        'retry-budget-secs': { type: 'string', default: String(DEFAULT_POLICY.budgetMs / 1000) },
        'retry-max-wait-secs': { type: 'string', default: String(DEFAULT_POLICY.maxWaitMs / 1000) },
        'requests-per-minute': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (error) {
    throw new Failure(`${error.message}\n${USAGE}`);
  }
  if (values.help) {
    writeSync(1, `${USAGE}\n`);
    process.exit(0);
  }
  const missing = ['base-url', 'db'].filter((name) => !values[name]);
  if (missing.length) throw new Failure(`missing ${missing.map((m) => `--${m}`).join(', ')}\n${USAGE}`);
  checkBaseUrl(values['base-url']);
  const number = (name) => {
    const n = Number(values[name]);
    if (values[name].trim() === '' || !Number.isFinite(n) || n < 0) throw new Failure(`--${name} must be a non-negative number`);
    return n;
  };
  // A request that may take no time at all can only time out, and be retried until the budget ends.
  const positive = (name) => {
    const n = number(name);
    if (n === 0) throw new Failure(`--${name} must be more than 0`);
    return n;
  };
  // No prototype: a key like `__proto__` is just another (unknown) key.
  const config = Object.create(null);
  for (const pair of values.config) {
    const split = pair.indexOf('=');
    if (split <= 0) throw new Failure(`--config takes <key>=<value>, got \`${pair}\``);
    const key = pair.slice(0, split);
    if (Object.hasOwn(config, key)) throw new Failure(`--config ${key} is given twice`);
    config[key] = pair.slice(split + 1);
  }
  if (values['realm-id'] !== undefined) {
    if (Object.hasOwn(config, 'realmId') && config.realmId !== values['realm-id']) {
      throw new Failure('--realm-id and --config realmId=... disagree');
    }
    config.realmId = values['realm-id'];
  }
  let requestsPerMinute;
  if (values['requests-per-minute'] !== undefined) {
    requestsPerMinute = number('requests-per-minute');
    if (!Number.isInteger(requestsPerMinute)) throw new Failure('--requests-per-minute must be a whole number');
  }
  return {
    component: values.component,
    baseUrl: values['base-url'],
    config,
    db: values.db,
    connection: values.connection,
    printHash: values['print-hash'],
    // Like sync-host: errors only unless asked for more.
    logLevel: values['log-level'] ?? (values.verbose ? 'info' : 'error'),
    cacheDir: values['cache-dir'],
    policy: {
      timeoutMs: positive('request-timeout-secs') * 1000,
      baseMs: number('retry-base-ms'),
      budgetMs: number('retry-budget-secs') * 1000,
      maxWaitMs: number('retry-max-wait-secs') * 1000,
    },
    requestsPerMinute,
  };
}

/** The run error variant, worded like sync-host's. */
function describeRunError({ tag, val }) {
  switch (tag) {
    case 'provider': {
      let text = `provider error: HTTP ${val.status}`;
      if (val.code) text += `, code ${val.code}`;
      if (val.message) text += `: ${val.message}`;
      if (val.detail) text += ` (${val.detail})`;
      return text;
    }
    case 'invalid-response':
      return `invalid response from the provider: ${val}`;
    case 'missing-config':
      return `missing configuration: ${val}`;
    case 'invalid-config':
      return `invalid configuration: ${val}`;
    case 'proxy':
      return `proxy error: ${val}`;
    case 'store':
      return `store error: ${val}`;
    default:
      return `${tag}: ${JSON.stringify(val)}`;
  }
}

async function main(options, token) {
  const { sha256, dir } = await prepareComponent(options.component, options.cacheDir);
  if (options.printHash) writeSync(2, `component sha256 ${sha256}\n`);

  const logger = createLogger({ level: options.logLevel, connection: options.connection, runId: randomBytes(8).toString('hex') });
  let store;
  try {
    store = new SqliteStore(options.db);
  } catch (error) {
    throw new Failure(error.message);
  }
  // Filled in from `describe` before `run`: the declared models (the records
  // store takes no other), the sync's name (the checkpoint's key) and the
  // provider's limits (the proxy's pacing and throttle advice).
  const context = { connection: options.connection, models: [], sync: undefined };
  const { totals, records, listing } = createRecords(store, context);
  const proxy = createProxy({ baseUrl: options.baseUrl, token, policy: options.policy, log: logger.host });
  try {
    const instance = await instantiateComponent(dir, {
      ...wasiImports(),
      'portable-sync:sync/proxy': proxy.wit,
      'portable-sync:sync/records': records,
      'portable-sync:sync/listing': listing,
      'portable-sync:sync/checkpoint': createCheckpoint(store, context),
      'portable-sync:sync/config': createConfig(options.config),
      'portable-sync:sync/logging': logger.wit,
    });
    const sync = instance.sync ?? instance['portable-sync:sync/sync@0.2.0'];
    const metadata = sync.describe();
    context.models = metadata.models.map((m) => m.name);
    context.sync = metadata.name;
    const declared = metadata.configuration.map((key) => key.name);
    const unknown = Object.keys(options.config).filter((key) => !declared.includes(key));
    if (unknown.length) {
      throw new Failure(
        `the component does not read configuration ${unknown.map((k) => `\`${k}\``).join(', ')} (it reads: ${declared.join(', ') || 'nothing'})`,
      );
    }
    const { requestsPerMinute, throttleWaitSecs } = metadata.limits;
    proxy.setLimits({ requestsPerMinute: options.requestsPerMinute ?? requestsPerMinute, throttleWaitSecs });

    let summary;
    try {
      summary = sync.run();
    } catch (error) {
      // A run that returns its error variant throws jco's ComponentError with
      // the variant as `payload`; anything else is a trap.
      if (error?.payload?.tag) throw new Failure(`run failed: ${describeRunError(error.payload)}`);
      throw new Failure(`run failed: component stopped: ${error?.message ?? error}`);
    }
    const { added, updated, deleted, unchanged } = totals;
    const { pages, requests, retries } = summary;
    return JSON.stringify({ added, updated, deleted, unchanged, pages, requests, retries });
  } finally {
    store.close();
    await proxy.close();
  }
}

const token = process.env.QBO_ACCESS_TOKEN || undefined;
// Belt and braces: no error line may carry the token, whatever produced it.
// (Very short values are left alone: they are no real token, and would garble
// ordinary words; real OAuth tokens are hundreds of characters.)
const redact = (text) => (token?.length >= 8 ? text.split(token).join('[redacted]') : text);

try {
  const line = await main(parseCommandLine(process.argv.slice(2)), token);
  writeSync(1, `${line}\n`);
  process.exit(0);
} catch (error) {
  const message = error instanceof Failure ? error.message : (error?.message ?? String(error));
  const [first, ...rest] = redact(message).split('\n');
  // One line for the error; the usage text (if any) follows on its own lines.
  writeSync(2, `error: ${first}\n${rest.length ? `${rest.join('\n')}\n` : ''}`);
  process.exit(1);
}
