import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import Database from 'better-sqlite3';

import { recordHash, SqliteStore, listMigrations, MIGRATIONS_DIR, nowUs } from '../src/store.mjs';

const C = 'conn';
const M = 'Customer';
const tempPath = () => join(mkdtempSync(join(tmpdir(), 'node-host-store-')), 'store.sqlite');
const fresh = () => new SqliteStore(tempPath());
/** Records as `validateBatch` would hand them over. */
const recs = (...values) => values.map((v) => ({ id: v.id, json: JSON.stringify(v), hash: recordHash(v) }));
const rows = (store) =>
  Object.fromEntries(
    store.db
      .prepare('SELECT id, json, first_seen_at, last_modified_at, last_action, deleted_at, listing FROM records ORDER BY id')
      .all()
      .map((r) => [r.id, r]),
  );
const scopeRow = (store) => store.db.prepare('SELECT * FROM scopes WHERE connection = ? AND model = ?').get(C, M);
const live = (store) => Object.values(rows(store)).filter((r) => r.deleted_at === null).map((r) => r.id).sort();
const errorName = (fn) => {
  try {
    fn();
  } catch (error) {
    return error.name;
  }
  return 'no error';
};

test('a new database gets the migration files, user_version and the pragmas of the Rust host', () => {
  const path = tempPath();
  const store = new SqliteStore(path);
  const migrations = listMigrations();
  assert.ok(migrations.length >= 2);
  assert.equal(store.db.pragma('user_version', { simple: true }), migrations.at(-1).version);
  assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(store.db.pragma('synchronous', { simple: true }), 1); // NORMAL
  assert.equal(store.db.pragma('busy_timeout', { simple: true }), 10000);
  const columns = (table) => store.db.prepare(`SELECT name FROM pragma_table_info('${table}')`).pluck().all();
  assert.deepEqual(columns('scopes'), ['id', 'connection', 'model', 'clock_us', 'open_listing', 'last_listing']);
  assert.deepEqual(columns('records'), [
    'scope', 'id', 'json', 'hash', 'first_seen_at', 'last_modified_at', 'last_action', 'deleted_at', 'listing',
  ]);
  assert.deepEqual(columns('checkpoints'), ['connection', 'sync', 'value', 'saved_at']);
  store.close();
  // Reopening applies nothing twice.
  new SqliteStore(path).close();
});

test('a database of sync-host 0.1 (no user_version) is upgraded in place, records kept', () => {
  const path = tempPath();
  const old = new Database(path);
  old.exec(readFileSync(join(MIGRATIONS_DIR, listMigrations()[0].name), 'utf8'));
  old.exec(`INSERT INTO scopes (connection, model, clock_us) VALUES ('${C}', '${M}', 5);
            INSERT INTO records VALUES (1, 'a', '{"id":"a"}', x'00', 5, 5, 'ADDED', NULL);`);
  assert.equal(old.pragma('user_version', { simple: true }), 0);
  old.close();
  const store = new SqliteStore(path);
  assert.equal(store.db.pragma('user_version', { simple: true }), listMigrations().at(-1).version);
  assert.deepEqual(scopeRow(store), { id: 1, connection: C, model: M, clock_us: 5, open_listing: null, last_listing: 0 });
  assert.equal(rows(store).a.listing, null);
  store.close();
});

test('a database written by a newer host is refused', () => {
  const path = tempPath();
  const newer = new Database(path);
  newer.pragma('user_version = 99');
  newer.close();
  assert.throws(() => new SqliteStore(path), /schema version 99.*newer host/);
});

test('what each change writes to the record\'s row', () => {
  const store = fresh();
  store.save(C, M, recs({ id: '1', n: 1 }, { id: '2', n: 2 }));
  const first = rows(store);
  for (const r of Object.values(first)) {
    assert.equal(r.last_action, 'ADDED');
    assert.equal(r.first_seen_at, r.last_modified_at);
    assert.equal(r.deleted_at, null);
  }
  // Same payload (keys reordered), changed payload.
  store.save(C, M, recs({ n: 1, id: '1' }, { id: '2', n: 3 }));
  let now = rows(store);
  assert.deepEqual(now['1'], first['1'], 'an identical save touches nothing, not even the stored text');
  assert.equal(now['2'].last_action, 'UPDATED');
  assert.equal(now['2'].json, '{"id":"2","n":3}');
  assert.ok(now['2'].last_modified_at > first['2'].last_modified_at);
  assert.equal(now['2'].first_seen_at, first['2'].first_seen_at);

  store.delete(C, M, ['2']);
  const deleted = rows(store)['2'];
  assert.equal(deleted.last_action, 'DELETED');
  assert.equal(deleted.deleted_at, deleted.last_modified_at);
  assert.equal(deleted.json, '{"id":"2","n":3}', 'the payload is kept');
  store.delete(C, M, ['2']);
  assert.deepEqual(rows(store)['2'], deleted, 'deleting it again touches nothing');

  // A deleted id saved again, even unchanged, comes back as updated.
  store.save(C, M, recs({ id: '2', n: 3 }));
  now = rows(store);
  assert.deepEqual([now['2'].last_action, now['2'].deleted_at], ['UPDATED', null]);
  assert.ok(now['2'].last_modified_at > deleted.last_modified_at);

  // The end of a listing deletes the same way, and leaves deleted rows alone.
  store.delete(C, M, ['2']);
  const deletedBefore = rows(store)['2'];
  store.endListing(C, M, store.beginListing(C, M));
  const unseen = rows(store)['1'];
  assert.deepEqual([unseen.last_action, unseen.json], ['DELETED', '{"id":"1","n":1}']);
  assert.equal(unseen.deleted_at, unseen.last_modified_at);
  assert.deepEqual(rows(store)['2'], deletedBefore);

  // Empty batches do nothing at all (not even create the scope of another model).
  store.save(C, 'Other', []);
  store.delete(C, 'Other', []);
  assert.equal(store.db.prepare('SELECT count(*) FROM scopes').pluck().get(), 1);
  store.close();
});

test('scopes keep connections and models apart', () => {
  const store = fresh();
  store.save(C, M, recs({ id: '1' }));
  assert.equal(store.save('other', M, recs({ id: '1' })).added, 1);
  assert.equal(store.save(C, 'Invoice', recs({ id: '1' })).added, 1);
  assert.equal(store.db.prepare('SELECT count(*) FROM scopes').pluck().get(), 3);
  store.close();
});

test('timestamps strictly increase within a scope, across batches, and survive a clock going back', () => {
  const store = fresh();
  const many = Array.from({ length: 500 }, (_, i) => ({ id: String(i).padStart(3, '0') }));
  store.save(C, M, recs(...many));
  store.delete(C, M, many.slice(0, 100).map((r) => r.id));
  store.save(C, M, recs(...many.slice(0, 200).map((r) => ({ ...r, again: true }))));
  const stamps = store.db.prepare('SELECT last_modified_at FROM records ORDER BY last_modified_at').pluck().all();
  assert.equal(new Set(stamps).size, 500, 'no two records share a timestamp');
  assert.equal(scopeRow(store).clock_us, stamps.at(-1), 'the last timestamp is written back');
  assert.ok(Math.abs(stamps.at(-1) - nowUs()) < 60e6, 'microseconds since the epoch');

  // The clock of the scope is ahead of the wall clock (another host's clock,
  // or ours was set back): timestamps go on from it.
  const ahead = nowUs() + 3_600e6;
  store.db.prepare('UPDATE scopes SET clock_us = ?').run(ahead);
  store.save(C, M, recs({ id: 'late' }));
  assert.equal(rows(store).late.last_modified_at, ahead + 1);
  assert.equal(store.delete(C, M, ['late']).deleted, 1);
  assert.equal(rows(store).late.deleted_at, ahead + 2);
  store.close();
});

test('a record saved while the listing is open is never deleted by it, whoever saved it', () => {
  const path = tempPath();
  const store = new SqliteStore(path);
  const other = new SqliteStore(path); // another writer of the connection
  store.save(C, M, recs({ id: 'old' }));
  const listing = store.beginListing(C, M);
  store.save(C, M, recs({ id: 'new' }));
  other.save(C, M, recs({ id: 'theirs' }, { id: 'old' }));
  assert.equal(store.endListing(C, M, listing).deleted, 0);
  assert.deepEqual(live(store), ['new', 'old', 'theirs']);
  store.close();
  other.close();
});

test('keep marks live ids seen and touches nothing else; a deleted id is neither kept nor revived', () => {
  const store = fresh();
  store.save(C, M, recs({ id: 'a' }, { id: 'gone' }));
  store.delete(C, M, ['gone']);
  const before = rows(store);
  const listing = store.beginListing(C, M);
  store.keep(C, M, listing, ['a', 'gone']);
  const kept = rows(store);
  assert.deepEqual(kept.a, { ...before.a, listing: Number(listing) }, 'only the listing of `a` changes');
  assert.deepEqual(kept.gone, before.gone);
  assert.equal(store.endListing(C, M, listing).deleted, 0);
  assert.deepEqual(rows(store).gone, before.gone);
  store.close();
});

test('abandoning a listing that is not the open one leaves the open one alone', () => {
  const store = fresh();
  store.save(C, M, recs({ id: 'a' }));
  const listing = store.beginListing(C, M);
  store.abandonListing(C, M, listing + 1n);
  assert.equal(store.currentListing(C, M), listing);
  assert.equal(store.endListing(C, M, listing).deleted, 1);
  store.close();
});

test('on a model never listed: current is none, keep and end are refused, abandon does nothing; no scope is created', () => {
  const store = fresh();
  assert.equal(store.currentListing(C, M), undefined);
  assert.equal(errorName(() => store.keep(C, M, 1n, ['a'])), 'NoListingError');
  assert.equal(errorName(() => store.endListing(C, M, 1n)), 'NoListingError');
  store.abandonListing(C, M, 1n);
  assert.equal(store.db.prepare('SELECT count(*) FROM scopes').pluck().get(), 0);
  store.close();
});

test('the checkpoint is per connection and sync, stamped, and survives a restart', () => {
  const path = tempPath();
  const store = new SqliteStore(path);
  store.saveCheckpoint(C, 'customers', '{"at":"x"}');
  store.saveCheckpoint(C, 'invoices', 'other');
  store.close();
  const again = new SqliteStore(path);
  assert.equal(again.checkpoint(C, 'customers'), '{"at":"x"}');
  assert.equal(again.checkpoint(C, 'invoices'), 'other');
  assert.equal(again.checkpoint('nobody', 'customers'), undefined);
  const row = again.db.prepare('SELECT * FROM checkpoints WHERE sync = ?').get('customers');
  assert.ok(Math.abs(row.saved_at - nowUs()) < 60e6);
  again.close();
});

/** Bytes one batch appends to the WAL (checkpointed away before it). */
function walBytesOfBatch(store, path, batch) {
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  assert.equal(statSync(`${path}-wal`).size, 0);
  batch();
  return statSync(`${path}-wal`).size;
}

/** A record about the size of a QuickBooks customer. */
const customer = (i, version = 0) => ({
  id: String(i),
  given_name: `Given ${i}`,
  display_name: `Display Name ${i} ${version}`,
  active: true,
  balance_cents: i * 7 + version,
  primary_email: `customer.${i}@example.com`,
  bill_address: { city: 'Palo Alto', line1: `${i} Ocean Dr.`, postal_code: '94303', country: null, id: '' },
  updated_at: '2026-04-30T20:59:25.000Z',
});

test('the bytes a batch writes grow with the batch, not with the store', () => {
  const measure = (size) => {
    const path = tempPath();
    const store = new SqliteStore(path);
    for (let from = 0; from < size; from += 1000) {
      store.save(C, M, recs(...Array.from({ length: 1000 }, (_, i) => customer(from + i))));
    }
    // A page of 100: 50 changed customers spread over the store, 50 new ones,
    // inside an open listing (every record of the batch is marked seen).
    const listing = store.beginListing(C, M);
    const bytes = walBytesOfBatch(store, path, () =>
      store.save(C, M, recs(
        ...Array.from({ length: 50 }, (_, i) => customer(Math.floor((i * size) / 50), 1)),
        ...Array.from({ length: 50 }, (_, i) => customer(size + i)),
      )),
    );
    store.abandonListing(C, M, listing);
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    const fileBytes = statSync(path).size;
    store.close();
    return { bytes, fileBytes };
  };
  const small = measure(3_000);
  const large = measure(30_000);
  assert.ok(large.fileBytes > 8 * small.fileBytes, `the store grew: ${small.fileBytes} → ${large.fileBytes}`);
  assert.ok(large.bytes < 1.6 * small.bytes, `batch bytes ${small.bytes} at 3k, ${large.bytes} at 30k`);
  assert.ok(large.bytes < large.fileBytes / 10, `a batch writes ${large.bytes} bytes of a ${large.fileBytes}-byte store`);
});
