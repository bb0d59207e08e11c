// An operator at sync-host's dashboard (/ui), in Debian's headless Chromium
// driven by playwright-core: run by tests/ui.rs, which starts `sync-host
// serve` on the fake QuickBooks and gives this script, on stdin, what it set
// up: {base, chromium, key, wrongKey, connection, broken, expectedLive,
// hostileId, hostile, gate, screenshots, secrets}. Every check compares what
// the page shows with the API's answers or the fake's truth; waits end when
// the page shows the awaited state (their timeout only bounds a failure).
// Prints one JSON line, {"ok": true, "checked": [...]}, or fails.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const config = JSON.parse(readFileSync(0, 'utf8'));
const { base, key, connection, broken, expectedLive, hostileId, hostile } = config;
const WAIT = { timeout: 120_000 };
const checked = [];
const step = (what) => {
  checked.push(what);
  process.stderr.write(`ui: ${what}\n`);
};

async function api(path, headers = {}) {
  const response = await fetch(base + path, { headers: { Authorization: `Bearer ${key}`, ...headers } });
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.json();
}

async function apiRecordIds() {
  const ids = [];
  let cursor = null;
  do {
    const page = await api(`/customers?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { 'Connection-Id': connection });
    ids.push(...page.records.map((r) => r.id));
    cursor = page.next_cursor;
  } while (cursor);
  return ids;
}

/** Every answer of the API a page got, and every error it logged but the browser's own "Failed to load resource". */
const watched = [];
function watch(page) {
  const seen = { answers: [], errors: [] };
  watched.push({ page, seen });
  page.on('response', async (response) => {
    const url = new URL(response.url());
    if (url.origin !== new URL(base).origin || url.pathname.startsWith('/ui')) return;
    seen.answers.push({ path: url.pathname + url.search, status: response.status(), body: await response.text().catch(() => '') });
  });
  page.on('pageerror', (error) => seen.errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) seen.errors.push(message.text());
  });
  return seen;
}

async function giveKey(page, value) {
  await page.locator('#api-key').waitFor(WAIT);
  await page.fill('#api-key', value);
  await page.click('form.key-form button[type=submit]');
}

const text = (page, selector) => page.locator(selector).first().textContent();
const shownIds = (page) => page.locator('#records td.record-id').allTextContents();

/** Waits until the records table shows exactly `ids`, in order; fails saying what it shows. */
async function waitForIds(page, ids, what) {
  try {
    await page.waitForFunction((want) => {
      const got = [...document.querySelectorAll('#records td.record-id')].map((td) => td.textContent);
      return got.length === want.length && got.every((id, i) => id === want[i]);
    }, ids, WAIT);
  } catch (error) {
    assert.fail(`${what}: the table shows ${JSON.stringify(await shownIds(page))}, not ${JSON.stringify(ids)} (${error.message})`);
  }
}
const rows = (page) => page.locator('#runs tbody tr[data-run]');

const browser = await chromium.launch({ executablePath: config.chromium, headless: true });
try {
  // ---- The page's own headers; the data behind the key.
  const page0 = await fetch(`${base}/ui`);
  assert.equal(page0.status, 200);
  const csp = page0.headers.get('content-security-policy');
  for (const directive of ["script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"]) assert.ok(csp.includes(directive), csp);
  assert.equal(page0.headers.get('x-content-type-options'), 'nosniff');
  assert.equal((await fetch(`${base}/connections`)).status, 401);
  step('/ui is served with a strict CSP and nosniff; the API needs the key');

  // ---- A stranger: no key, then a wrong one. Nothing of the data shows.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    const seen = watch(page);
    await page.goto(`${base}/ui#/connections/${connection}`);
    await page.locator('#api-key').waitFor(WAIT);
    await giveKey(page, config.wrongKey);
    await page.locator('#key-refused').waitFor(WAIT);
    await page.goto(`${base}/ui#/records/${connection}`);
    await page.locator('#api-key').waitFor(WAIT);
    const shown = await page.locator('body').innerText();
    for (const name of [connection, broken, 'Records stored']) assert.ok(!shown.includes(name), `a stranger sees ${name}`);
    assert.equal(await page.locator('table').count(), 0, 'no table without the key');
    assert.ok(seen.answers.length >= 2 && seen.answers.every((a) => a.status === 401), JSON.stringify(seen.answers));
    assert.deepEqual(seen.errors, []);
    await context.close();
    step('without the key, and with a wrong one, the page shows the refusal and no data');
  }

  // ---- The operator.
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const seen = watch(page);
  await page.goto(`${base}/ui`);
  await giveKey(page, key);
  await page.locator('#connections tbody tr[data-connection]').first().waitFor(WAIT);
  const listed = (await api('/connections')).connections;
  assert.equal(await page.locator('#connections tbody tr[data-connection]').count(), listed.length);
  const acmeRow = page.locator(`#connections tr[data-connection="${connection}"]`);
  assert.equal(await acmeRow.locator('.badge').first().textContent(), 'idle');
  assert.equal(await acmeRow.locator('.records-stored').textContent(), String(expectedLive));
  assert.ok((await acmeRow.locator('.counts').textContent()).startsWith(`${expectedLive} added · 0 updated · 0 deleted`));
  const globex = listed.find((c) => c.id === broken);
  assert.equal(globex.status, 'needs_reauth', JSON.stringify(globex));
  const globexRow = page.locator(`#connections tr[data-connection="${broken}"]`);
  assert.equal(await globexRow.locator('.badge').first().textContent(), 'needs re-authorisation');
  assert.equal(await globexRow.locator('.reason').textContent(), globex.status_message);
  step(`the connections page lists ${listed.length} connections, ${expectedLive} records stored, why one needs re-authorising`);

  await page.selectOption('#status-filter', 'idle');
  await page.waitForFunction(() => document.querySelectorAll('#connections tbody tr[data-connection]').length === 1, null, WAIT);
  assert.equal(await page.locator('#connections tbody tr[data-connection]').getAttribute('data-connection'), connection);
  await page.selectOption('#status-filter', globex.status);
  await page.waitForFunction((id) => {
    const shown = [...document.querySelectorAll('#connections tbody tr[data-connection]')];
    return shown.length === 1 && shown[0].dataset.connection === id;
  }, broken, WAIT);
  await page.selectOption('#status-filter', '');
  await page.waitForFunction((n) => document.querySelectorAll('#connections tbody tr[data-connection]').length === n, listed.length, WAIT);
  step('the status filter shows the connections of that status only');
  await page.locator('body').screenshot({ path: join(config.screenshots, 'ui-connections.png') });

  // ---- A connection.
  await page.click(`#connections a[href="#/connections/${connection}"]`);
  await rows(page).first().waitFor(WAIT);
  assert.equal(await text(page, '.records-count[data-model="Customer"]'), String(expectedLive));
  const history = (await api(`/connections/${connection}/runs?limit=50`)).runs;
  assert.equal(await rows(page).count(), history.length);
  assert.equal(await page.locator('#chart svg .run-bar').count(), history.length);
  step('the connection page shows its records, its runs in the table and the chart');

  // Run now, from the keyboard, followed live (the run waits at the fake until the page shows it running).
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.locator('body').focus();
  let focused = '';
  for (let i = 0; i < 60 && focused !== 'run-now'; i += 1) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  }
  assert.equal(focused, 'run-now', 'Run now is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => {
    const live = document.getElementById('live');
    return live && !live.hidden && live.textContent.includes('in progress');
  }, null, WAIT);
  const inFlight = page.locator('#runs tbody tr[data-run]').first();
  assert.equal(await inFlight.locator('.badge').textContent(), 'running');
  writeFileSync(config.gate, 'shown running');
  await page.waitForFunction(() => {
    const first = document.querySelector('#runs tbody tr[data-run]');
    return document.getElementById('live').hidden && first && first.querySelector('.badge').textContent === 'success'
      && first.children[1].textContent === 'api';
  }, null, WAIT);
  const newest = (await api(`/connections/${connection}/runs?limit=1`)).runs[0];
  assert.equal(await rows(page).first().getAttribute('data-run'), newest.id);
  assert.deepEqual([newest.summary.updated, newest.summary.deleted], [1, 1], JSON.stringify(newest));
  assert.deepEqual(await rows(page).first().locator('td').allTextContents().then((t) => t.slice(4, 7)), ['0', '1', '1']);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload');
  step('run now (Enter on the focused button) shows the run in progress, then its success and counts, without a reload');

  await page.waitForFunction(() => [...document.querySelectorAll('#deliveries tbody tr[data-delivery] .badge')]
    .some((b) => b.textContent === 'delivered'), null, WAIT);
  step('the webhook deliveries show a delivered one');

  // Pause, run now refused while paused, resume.
  await page.click('#pause');
  await page.waitForFunction(() => document.querySelector('#status .badge').textContent === 'paused', null, WAIT);
  assert.equal((await api(`/connections/${connection}`)).status, 'paused');
  await page.click('#run-now');
  await page.waitForFunction(() => document.getElementById('action-result').textContent.includes('409 paused'), null, WAIT);
  await page.click('#resume');
  await page.waitForFunction(() => document.querySelector('#status .badge').textContent === 'idle', null, WAIT);
  assert.notEqual((await api(`/connections/${connection}`)).status, 'paused');
  step('pause and resume are reflected; run now while paused shows the 409');

  // The interval: a refused one, one set, and the component's again.
  await page.fill('#every', 'soon');
  await page.click('#set-every');
  await page.waitForFunction(() => document.getElementById('action-result').textContent.includes('400 invalid_every'), null, WAIT);
  await page.fill('#every', '15m');
  await page.click('#set-every');
  await page.waitForFunction(() => document.getElementById('action-result').textContent.startsWith('Set interval: done'), null, WAIT);
  assert.equal((await api(`/connections/${connection}`)).every, '15m');
  assert.ok((await page.locator('#facts').textContent()).includes('15m'));
  await page.click('#default-every');
  const component = await (async () => {
    for (;;) {
      const every = (await api(`/connections/${connection}`)).every;
      if (every !== '15m') return every;
      await page.waitForTimeout(100);
    }
  })();
  await page.waitForFunction((every) => document.getElementById('every').value === every, component, WAIT);
  step(`the interval: "soon" refused with the API's message, 15m set, the component's (${component}) again`);

  // Reset asks first: dismissed, nothing is sent; accepted, a full pass runs.
  const posts = () => seen.answers.filter((a) => a.path === `/connections/${connection}/sync`).length;
  const before = posts();
  const runsBefore = await rows(page).count();
  page.once('dialog', (dialog) => dialog.dismiss());
  await page.click('#reset');
  assert.equal(posts(), before, 'a dismissed reset sends nothing');
  let asked = '';
  page.once('dialog', (dialog) => { asked = dialog.message(); dialog.accept(); });
  await page.click('#reset');
  assert.ok(asked.includes('Forget the checkpoint'), asked);
  await page.waitForFunction((n) => {
    const first = document.querySelector('#runs tbody tr[data-run]');
    return document.querySelectorAll('#runs tbody tr[data-run]').length > n && first.querySelector('.badge').textContent === 'success';
  }, runsBefore, WAIT);
  step('reset asks for confirmation; dismissed it sends nothing, accepted it runs');
  await page.screenshot({ path: join(config.screenshots, 'ui-connection.png'), fullPage: true });

  // ---- The other connection: why it stopped, and its failed run's error in full.
  await page.click('a[data-nav="connections"]');
  await page.click(`#connections a[href="#/connections/${broken}"]`);
  await page.locator('#status-message').waitFor(WAIT);
  assert.equal(await text(page, '#status-message'), globex.status_message);
  const failed = (await api(`/connections/${broken}/runs`)).runs.filter((r) => r.error);
  assert.deepEqual(await page.locator('#runs pre.run-error').allTextContents(), failed.map((r) => r.error));
  assert.equal(await page.locator('#run-now').isVisible(), true);
  await page.click('#run-now');
  await page.waitForFunction(() => document.getElementById('action-result').textContent.includes('409 needs_reauth'), null, WAIT);
  step('a connection that needs re-authorising shows why, its failed runs\' errors in full, and refuses run now');

  // ---- Records: every record once, in the API's order.
  const expected = await apiRecordIds();
  await page.click('a[data-nav="records"]');
  await page.locator('#records-form').waitFor(WAIT);
  await page.fill('#records-limit', '40');
  await page.click('#records-form button[type=submit]');
  const browsed = [];
  const pages = Math.ceil(expected.length / 40);
  assert.ok(pages > 2, `${expected.length} records on several pages`);
  for (let p = 1; p <= pages; p += 1) {
    if (p > 1) {
      assert.equal(await page.locator('#records-next').isDisabled(), false, `page ${p - 1} offers a next one`);
      await page.click('#records-next');
    }
    await waitForIds(page, expected.slice((p - 1) * 40, p * 40), `page ${p}`);
    assert.ok((await text(page, '#records-status')).startsWith(`Page ${p}: records ${(p - 1) * 40 + 1}–`));
    browsed.push(...await shownIds(page));
  }
  assert.equal(await page.locator('#records-next').isDisabled(), true, 'the last page offers no next one');
  assert.equal(new Set(browsed).size, browsed.length, 'no record twice');
  assert.deepEqual(browsed, expected);
  step(`the records browser pages through all ${browsed.length} records once each, in the API's order (${pages} pages of 40)`);
  await page.click('#records-previous');
  await waitForIds(page, expected.slice((pages - 2) * 40, (pages - 1) * 40), 'the previous page');
  step('the previous page is the one before');

  // The hostile name, as text.
  const some = expected.filter((id) => id !== hostileId).slice(0, 4);
  await page.fill('#records-ids', [hostileId, ...some].join(', '));
  await page.click('#records-form button[type=submit]');
  await waitForIds(page, expected.filter((id) => id === hostileId || some.includes(id)), 'the records asked for by id');
  const hostileRow = page.locator(`#records tr[data-record="${hostileId}"]`);
  assert.equal(await hostileRow.locator('.record-name').textContent(), hostile);
  await hostileRow.locator('button').click();
  await page.locator('#record-json').waitFor(WAIT);
  const record = JSON.parse(await text(page, '#record-json'));
  assert.equal(record.display_name, hostile);
  const metadata = JSON.parse(await text(page, '#record-metadata'));
  const truth = (await api(`/customers?ids=${hostileId}`, { 'Connection-Id': connection })).records[0];
  assert.deepEqual(metadata, truth._nango_metadata);
  assert.equal(await page.locator('main img, main script').count(), 0, 'no element made of the data');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no script of the data ran');
  step('a customer named <img onerror>/<script> shows as text, in the table and in its JSON; nothing ran');

  await page.fill('#records-ids', '');
  await page.check('input[name=filter][value=deleted]');
  await page.click('#records-form button[type=submit]');
  const deleted = (await api('/customers?filter=deleted&limit=1000', { 'Connection-Id': connection })).records.map((r) => r.id);
  assert.ok(deleted.length > 0);
  await waitForIds(page, deleted.slice(0, 40), 'the deleted records');
  step(`the filter shows the ${deleted.length} deleted records`);
  const all = (await api('/customers?limit=1000', { 'Connection-Id': connection })).records;
  const since = all[Math.floor(all.length / 2)]._nango_metadata.last_modified_at;
  await page.uncheck('input[name=filter][value=deleted]');
  await page.fill('#records-modified-after', since);
  await page.click('#records-form button[type=submit]');
  const after = (await api(`/customers?limit=40&modified_after=${encodeURIComponent(since)}`, { 'Connection-Id': connection })).records;
  await waitForIds(page, after.map((r) => r.id), 'the records modified after a time');
  await page.fill('#records-modified-after', 'yesterday');
  await page.click('#records-form button[type=submit]');
  await page.waitForFunction(() => {
    const error = document.getElementById('records-error');
    return !error.hidden && error.textContent.includes('(400 ') && error.textContent.includes('`modified_after` must be an RFC 3339');
  }, null, WAIT);
  assert.equal(await page.locator('#records tbody tr[data-record]').count(), 0);
  await page.fill('#records-modified-after', '');
  step('modified_after shows what the API shows from that time; one it refuses shows its 400 and no records');
  await page.fill('#records-ids', [hostileId, ...some].join(', '));
  await page.uncheck('input[name=filter][value=deleted]');
  await page.click('#records-form button[type=submit]');
  await page.locator(`#records tr[data-record="${hostileId}"] button`).click();
  await page.locator('#record-json').waitFor(WAIT);
  await page.screenshot({ path: join(config.screenshots, 'ui-records.png'), fullPage: true });

  // ---- Reset and empty: asks, says what it deletes, and the store fills again.
  await page.goto(`${base}/ui#/connections/${connection}`);
  await rows(page).first().waitFor(WAIT);
  const runsNow = await rows(page).count();
  let warned = '';
  page.once('dialog', (dialog) => { warned = dialog.message(); dialog.accept(); });
  await page.click('#reset-empty');
  assert.ok(warned.includes('Delete every record'), warned);
  await page.waitForFunction((n) => {
    const first = document.querySelector('#runs tbody tr[data-run]');
    return document.querySelectorAll('#runs tbody tr[data-run]').length > n && first.querySelector('.badge').textContent === 'success';
  }, runsNow, WAIT);
  const stored = (await api(`/sync/status?syncs=*&provider_config_key=quickbooks&connection_id=${connection}`)).syncs[0].recordCount.Customer;
  await page.waitForFunction((n) => document.querySelector('.records-count[data-model="Customer"]').textContent === String(n), stored, WAIT);
  assert.equal(stored, expectedLive - 1, 'the live records again, less the one archived');
  step(`reset and empty warns what it deletes; the full pass fills the store again (${stored} records)`);

  // ---- Secrets: never in what the API gave the page.
  for (const answer of seen.answers) {
    for (const secret of config.secrets) assert.ok(!answer.body.includes(secret), `${answer.path} holds a secret`);
  }
  assert.deepEqual(seen.errors, [], 'no script error, no CSP violation');
  step(`no secret in the ${seen.answers.length} answers the page got; no script error or CSP violation`);
  await context.close();

  // ---- A phone's width.
  {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const page = await phone.newPage();
    await page.goto(`${base}/ui#/connections/${connection}`);
    await giveKey(page, key);
    await rows(page).first().waitFor(WAIT);
    const width = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(width[0] <= width[1], `the page fits a phone's width: ${width}`);
    await page.screenshot({ path: join(config.screenshots, 'ui-phone.png') });
    await phone.close();
    step('on a phone\'s width the page fits, tables scroll in their boxes');
  }
} catch (error) {
  // What the pages said, and what the last one showed, to tell why.
  for (const { page, seen } of watched) {
    process.stderr.write(`ui: errors logged by a page: ${JSON.stringify(seen.errors)}\n`);
    if (!page.isClosed()) {
      process.stderr.write(`ui: it shows:\n${await page.locator('main').innerText().catch(() => '?')}\n`);
      await page.screenshot({ path: join(config.screenshots, 'ui-failure.png'), fullPage: true }).catch(() => {});
    }
  }
  throw error;
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: true, checked }));
