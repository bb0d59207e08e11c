#!/usr/bin/env node
/**
 * Runs a portable-sync component once for a connection, in Node.js, like
 * `sync-host run`: the same .wasm, the same one-line JSON summary.
 *
 *   QBO_ACCESS_TOKEN=... node host/node/run.mjs --component <file.wasm> \
 *     --base-url <url> --realm-id <id> --db <state.json> [--connection <id>]
 */
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { createCheckpoint } from './src/checkpoint.mjs';
import { defaultCacheDir, instantiateComponent, prepareComponent } from './src/component.mjs';
import { createConfig } from './src/config.mjs';
import { createLogger } from './src/logging.mjs';
import { createProxy } from './src/proxy.mjs';
import { createRecords } from './src/records.mjs';
import { StateFile } from './src/state.mjs';
import { wasiImports } from './src/wasi.mjs';

const USAGE = `usage: node run.mjs --component <file.wasm> --base-url <url> --realm-id <id> --db <state.json>
                   [--connection <id>] [--print-hash] [--log-level trace|debug|info|warn|error|off] [--verbose]
                   [--cache-dir <dir>] [--request-timeout-secs <n>] [--retry-base-ms <n>]
The access token is read from the environment variable QBO_ACCESS_TOKEN.`;

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
        db: { type: 'string' },
        connection: { type: 'string', default: 'default' },
        'print-hash': { type: 'boolean', default: false },
        'log-level': { type: 'string' },
        verbose: { type: 'boolean', short: 'v', default: false },
        'cache-dir': { type: 'string', default: defaultCacheDir() },
        'request-timeout-secs': { type: 'string', default: '30' },
        'retry-base-ms': { type: 'string', default: '250' },
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
  const missing = ['base-url', 'realm-id', 'db'].filter((name) => !values[name]);
  if (missing.length) throw new Failure(`missing ${missing.map((m) => `--${m}`).join(', ')}\n${USAGE}`);
  const number = (name) => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < 0) throw new Failure(`--${name} must be a non-negative number`);
    return n;
  };
  return {
    component: values.component,
    baseUrl: values['base-url'],
    realmId: values['realm-id'],
    db: values.db,
    connection: values.connection,
    printHash: values['print-hash'],
    // Like sync-host: errors only unless asked for more.
    logLevel: values['log-level'] ?? (values.verbose ? 'info' : 'error'),
    cacheDir: values['cache-dir'],
    timeoutMs: number('request-timeout-secs') * 1000,
    retryBaseMs: number('retry-base-ms'),
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

  const state = new StateFile(options.db);
  const logger = createLogger({ level: options.logLevel, connection: options.connection, runId: randomBytes(8).toString('hex') });
  // Filled from `describe` before `run`: the records store only takes declared models.
  const declaredModels = [];
  const records = createRecords(state, declaredModels);
  const proxy = createProxy({
    baseUrl: options.baseUrl,
    token,
    timeoutMs: options.timeoutMs,
    retryBaseMs: options.retryBaseMs,
    log: logger.host,
  });
  try {
    const instance = await instantiateComponent(dir, {
      ...wasiImports(),
      'portable-sync:sync/proxy': proxy.wit,
      'portable-sync:sync/records': records.wit,
      'portable-sync:sync/checkpoint': createCheckpoint(state),
      'portable-sync:sync/config': createConfig({ realmId: options.realmId }),
      'portable-sync:sync/logging': logger.wit,
    });
    const sync = instance.sync ?? instance['portable-sync:sync/sync@0.1.0'];
    declaredModels.push(...sync.describe().models.map((m) => m.name));

    let summary;
    try {
      summary = sync.run();
    } catch (error) {
      // A run that returns its error variant throws jco's ComponentError with
      // the variant as `payload`; anything else is a trap.
      if (error?.payload?.tag) throw new Failure(`run failed: ${describeRunError(error.payload)}`);
      throw new Failure(`run failed: component stopped: ${error?.message ?? error}`);
    }
    const { added, updated, deleted, unchanged } = records.totals;
    const { pages, requests, retries } = summary;
    return JSON.stringify({ added, updated, deleted, unchanged, pages, requests, retries });
  } finally {
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
