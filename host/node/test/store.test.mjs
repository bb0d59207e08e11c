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
  assert.equal(store.db.pragma('user_version', { simple: true }), 2);
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

test('change tracking follows the records cache semantics', () => {
  const store = fresh();
  assert.deepEqual(store.save(C, M, recs({ id: '1', n: 1 }, { id: '2', n: 2 })), { added: 2, updated: 0, unchanged: 0, deleted: 0 });
  const first = rows(store);
  for (const r of Object.values(first)) {
    assert.equal(r.last_action, 'ADDED');
    assert.equal(r.first_seen_at, r.last_modified_at);
    assert.equal(r.deleted_at, null);
  }
  // Same payload (keys reordered), changed payload.
  assert.deepEqual(store.save(C, M, recs({ n: 1, id: '1' }, { id: '2', n: 3 })), { added: 0, updated: 1, unchanged: 1, deleted: 0 });
  let now = rows(store);
  assert.equal(now['1'].last_modified_at, first['1'].last_modified_at, 'an identical save changes nothing');
  assert.equal(now['1'].json, '{"id":"1","n":1}', 'nor the stored text');
  assert.equal(now['2'].last_action, 'UPDATED');
  assert.ok(now['2'].last_modified_at > first['2'].last_modified_at);
  assert.equal(now['2'].first_seen_at, first['2'].first_seen_at);

  assert.deepEqual(store.delete(C, M, ['2', 'nope']), { added: 0, updated: 0, unchanged: 0, deleted: 1 });
  assert.equal(store.delete(C, M, ['2']).deleted, 0, 'deleting a deleted id does nothing');
  now = rows(store);
  assert.equal(now['2'].last_action, 'DELETED');
  assert.equal(now['2'].deleted_at, now['2'].last_modified_at);
  assert.equal(now['2'].json, '{"id":"2","n":3}', 'the payload is kept');

  // A deleted id saved again, even unchanged, comes back as updated.
  assert.equal(store.save(C, M, recs({ id: '2', n: 3 })).updated, 1);
  now = rows(store);
  assert.deepEqual([now['2'].last_action, now['2'].deleted_at], ['UPDATED', null]);

  // Empty batches do nothing at all (not even create the scope of another model).
  assert.deepEqual(store.save(C, 'Other', []), { added: 0, updated: 0, unchanged: 0, deleted: 0 });
  assert.deepEqual(store.delete(C, 'Other', []), { added: 0, updated: 0, unchanged: 0, deleted: 0 });
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

test('ending a listing deletes the live records it did not see, and only those', () => {
  const store = fresh();
  store.save(C, M, recs({ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'd' }));
  store.delete(C, M, ['c']);
  const deletedAt = rows(store).c.deleted_at;
  assert.equal(store.currentListing(C, M), undefined);
  const listing = store.beginListing(C, M);
  assert.equal(listing, 1n);
  assert.equal(store.currentListing(C, M), 1n);
  // `a` unchanged, `d` changed: both seen.
  assert.deepEqual(store.save(C, M, recs({ id: 'a' }, { id: 'd', v: 2 })), { added: 0, updated: 1, unchanged: 1, deleted: 0 });
  assert.deepEqual(store.endListing(C, M, listing), { added: 0, updated: 0, unchanged: 0, deleted: 1 });
  const after = rows(store);
  assert.deepEqual(live(store), ['a', 'd']);
  assert.equal(after.b.last_action, 'DELETED');
  assert.equal(after.b.json, '{"id":"b"}', 'the payload is kept');
  assert.equal(after.c.deleted_at, deletedAt, 'an already deleted record is left alone');
  assert.equal(store.currentListing(C, M), undefined, 'the listing is closed');
  assert.equal(scopeRow(store).open_listing, null);
  assert.equal(errorName(() => store.endListing(C, M, listing)), 'NoListingError', 'ending it twice is refused');
  // Listing ids keep increasing.
  assert.equal(store.beginListing(C, M), 2n);
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

test('a second begin supersedes the first: ending the first is refused and deletes nothing', () => {
  const store = fresh();
  store.save(C, M, recs({ id: 'a' }, { id: 'b' }));
  const first = store.beginListing(C, M);
  store.save(C, M, recs({ id: 'a' }));
  const second = store.beginListing(C, M);
  assert.equal(second, first + 1n);
  assert.equal(store.currentListing(C, M), second);
  let message;
  try {
    store.endListing(C, M, first);
  } catch (error) {
    message = error.message;
  }
  assert.match(message, /listing 1 is not open \(the open listing of `Customer` is 2\); nothing was deleted/);
  assert.deepEqual(live(store), ['a', 'b'], 'nothing deleted');
  assert.equal(store.currentListing(C, M), second, 'the second stays open');
  // What the first saw does not count for the second.
  assert.equal(store.endListing(C, M, second).deleted, 2);
  store.close();
});

test('keep counts live ids as seen without saving; unknown and deleted ids are ignored', () => {
  const store = fresh();
  store.save(C, M, recs({ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'gone' }));
  store.delete(C, M, ['gone']);
  const before = rows(store);
  const listing = store.beginListing(C, M);
  store.keep(C, M, listing, ['a', 'gone', 'unknown']);
  store.save(C, M, recs({ id: 'b' }));
  assert.equal(errorName(() => store.keep(C, M, listing + 1n, ['c'])), 'NoListingError');
  const kept = rows(store);
  assert.equal(kept.a.last_modified_at, before.a.last_modified_at, 'keep changes no timestamp');
  assert.equal(kept.gone.listing, null, 'a deleted id is not kept');
  assert.equal(store.endListing(C, M, listing).deleted, 1);
  assert.deepEqual(live(store), ['a', 'b']);
  assert.equal(rows(store).gone.deleted_at, before.gone.deleted_at, 'and not revived');
  store.close();
});

test('abandon closes the open listing without deleting; anything else does nothing', () => {
  const store = fresh();
  store.save(C, M, recs({ id: 'a' }));
  store.abandonListing(C, M, 7n); // nothing open, no scope for other models either
  store.abandonListing(C, 'Nothing', 1n);
  const listing = store.beginListing(C, M);
  store.abandonListing(C, M, listing + 1n);
  assert.equal(store.currentListing(C, M), listing, 'abandoning another listing does nothing');
  store.abandonListing(C, M, listing);
  assert.equal(store.currentListing(C, M), undefined);
  assert.equal(errorName(() => store.endListing(C, M, listing)), 'NoListingError');
  assert.deepEqual(live(store), ['a']);
  store.close();
});

test('keep and end on a model never listed are refused; current is none', () => {
  const store = fresh();
  assert.equal(store.currentListing(C, M), undefined);
  assert.equal(errorName(() => store.keep(C, M, 1n, ['a'])), 'NoListingError');
  assert.equal(errorName(() => store.endListing(C, M, 1n)), 'NoListingError');
  store.close();
});

test('the checkpoint is per connection and sync, replaced atomically, and survives a restart', () => {
  const path = tempPath();
  const store = new SqliteStore(path);
  assert.equal(store.checkpoint(C, 'customers'), undefined);
  store.saveCheckpoint(C, 'customers', 'one');
  store.saveCheckpoint(C, 'customers', '{"at":"x"}');
  store.saveCheckpoint(C, 'invoices', 'other');
  store.close();
  const again = new SqliteStore(path);
  assert.equal(again.checkpoint(C, 'customers'), '{"at":"x"}');
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
