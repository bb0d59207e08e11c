import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import Database from 'better-sqlite3';

import { createCheckpoint } from '../src/checkpoint.mjs';
import { createRecords, validateBatch } from '../src/records.mjs';
import { canonicalJson, recordHash, SqliteStore } from '../src/store.mjs';

const tempPath = () => join(mkdtempSync(join(tmpdir(), 'node-host-records-')), 'store.sqlite');
const fresh = (path = tempPath()) => {
  const store = new SqliteStore(path);
  const context = { connection: 'c', models: ['Customer'], sync: 'customers' };
  return { path, store, context, ...createRecords(store, context) };
};
const refusal = (fn) => {
  try {
    fn();
  } catch (error) {
    return error.payload;
  }
  return 'no error';
};
const count = (store) => store.db.prepare('SELECT count(*) FROM records').pluck().get();

/**
 * Canonical-JSON hash vectors. The expected digests were computed outside
 * this code: the canonical text written by hand, hashed with
 * `printf '%s' '<canonical>' | sha256sum` (and cross-checked with Python's
 * `json.dumps(sort_keys=True, separators=(',', ':'), ensure_ascii=False)`).
 */
const VECTORS = [
  {
    text: ' { "id": "42", "b": 2,\n "a": [3, {"z": true, "y": null}] } ',
    canonical: '{"a":[3,{"y":null,"z":true}],"b":2,"id":"42"}',
    sha256: 'd3d5814a12d5ff891f0afb269da296d0e80571453317bd5dba21dcc9228b292d',
  },
  {
    // U+FF61 sorts before U+1F600 by UTF-8 bytes (EF.. < F0..), after it by
    // UTF-16 code units (FF61 > D83D): the order must be the bytes'.
    text: String.raw`{"id":"x","😀":1,"｡":2,"é":"M\u00fcller","Z":-5,"a":"line\nbreak \"q\""}`,
    canonical: String.raw`{"Z":-5,"a":"line\nbreak \"q\"","id":"x","é":"Müller","｡":2,"😀":1}`,
    sha256: 'b7f9c820bbb0056185ca1536dfa41134284fac4ce833d2d398600a4471c2184f',
  },
  {
    text: String.raw`{"tab":"\t\u0001\/","nested":{"a":{},"b":[]},"id":"7","balance_cents":-123456789012}`,
    canonical: String.raw`{"balance_cents":-123456789012,"id":"7","nested":{"a":{},"b":[]},"tab":"\t\u0001/"}`,
    sha256: 'ea2f5de82c3b2ab30386a5c1fa092d904c734a5da95a039b856ffd1a4830cd10',
  },
];

test('canonical JSON hashes match vectors computed independently', () => {
  for (const { text, canonical, sha256 } of VECTORS) {
    assert.equal(canonicalJson(JSON.parse(text)), canonical);
    assert.equal(recordHash(JSON.parse(text)).toString('hex'), sha256);
    const [valid] = validateBatch([text]);
    assert.equal(valid.hash.toString('hex'), sha256);
    assert.equal(valid.json, text.trim(), 'the stored text is the record as given, trimmed');
  }
});

test('an id like __proto__ is just another id', () => {
  const { store, records } = fresh();
  assert.equal(records.batchSave('Customer', ['{"id":"__proto__","n":1}']).added, 1);
  assert.equal(records.batchSave('Customer', ['{"__proto__":{"x":1},"id":"p"}']).added, 1);
  assert.equal(records.batchSave('Customer', ['{"id":"p","__proto__":{"x":1}}']).unchanged, 1);
  store.close();
});

test('keep checks its ids like a delete batch: after the model, before the listing', () => {
  const { store, records, listing } = fresh();
  records.batchSave('Customer', ['{"id":"a"}', '{"id":"b"}']);
  const open = listing.begin('Customer');
  assert.deepEqual(refusal(() => listing.keep('Customer', open, ['a', ''])), { tag: 'invalid-id', val: 'record 1 has no string `id`' });
  assert.deepEqual(refusal(() => listing.keep('Customer', open, ['b', 'a', 'b'])), {
    tag: 'duplicate-id',
    val: 'id `b` appears more than once in the batch',
  });
  assert.equal(refusal(() => listing.keep('Invoice', open, [''])).tag, 'undeclared-model');
  assert.equal(refusal(() => listing.keep('Customer', open + 1n, ['a', 'a'])).tag, 'duplicate-id');
  assert.equal(refusal(() => listing.keep('Customer', open + 1n, ['a'])).tag, 'no-listing');
  // The refused calls kept nothing: ending the listing deletes both.
  assert.equal(listing.end('Customer', open).deleted, 2);
  store.close();
});

test('the run totals count every change, deletions by a listing included, refusals not', () => {
  const { store, records, listing, totals } = fresh();
  records.batchSave('Customer', ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}', '{"id":"d"}']);
  const open = listing.begin('Customer');
  records.batchSave('Customer', ['{"id":"a"}', '{"id":"b","n":2}']);
  listing.keep('Customer', open, ['c']);
  listing.end('Customer', open); // deletes d
  records.batchDelete('Customer', ['c']);
  assert.equal(refusal(() => records.batchSave('Customer', ['{"id":"x"}', '{"id":"x"}'])).tag, 'duplicate-id');
  assert.deepEqual(totals, { added: 4, updated: 1, unchanged: 1, deleted: 2 });
  store.close();
});

test('a store failure is a `store` error and rolls the batch back', () => {
  const { path, store, records } = fresh();
  store.db.pragma('busy_timeout = 50');
  const other = new Database(path);
  other.exec('BEGIN IMMEDIATE');
  const refused = refusal(() => records.batchSave('Customer', ['{"id":"1"}']));
  assert.equal(refused.tag, 'store');
  assert.match(refused.val, /locked|busy/i);
  other.exec('ROLLBACK');
  other.close();
  assert.equal(count(store), 0);
  assert.equal(records.batchSave('Customer', ['{"id":"1"}']).added, 1, 'and the store works again');
  store.close();
});

test('the checkpoint capability keys on the connection and the sync name', () => {
  const { path, store, context } = fresh();
  const checkpoint = createCheckpoint(store, context);
  assert.equal(checkpoint.get(), undefined);
  checkpoint.save('{"at":"x"}');
  store.close();
  const again = new SqliteStore(path);
  assert.equal(createCheckpoint(again, context).get(), '{"at":"x"}');
  assert.equal(createCheckpoint(again, { ...context, sync: 'other' }).get(), undefined);
  assert.equal(createCheckpoint(again, { ...context, connection: 'd' }).get(), undefined);
  again.close();
});
