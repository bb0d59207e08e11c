import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { createCheckpoint } from '../src/checkpoint.mjs';
import { canonicalJson, createRecords } from '../src/records.mjs';
import { StateFile } from '../src/state.mjs';

const fresh = () => {
  const path = join(mkdtempSync(join(tmpdir(), 'node-host-test-')), 'state.json');
  return { path, file: new StateFile(path) };
};
const errorTag = (fn) => {
  try {
    fn();
  } catch (error) {
    return error.payload?.tag;
  }
  return 'no error';
};

test('canonical JSON ignores key order and whitespace', () => {
  assert.equal(canonicalJson(JSON.parse('{"b":[1,{"y":2,"x":1}],"a":null}')), '{"a":null,"b":[1,{"x":1,"y":2}]}');
  assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson(JSON.parse('{ "b": 2, "a": 1 }')));
});

test('change tracking follows the records cache semantics', () => {
  const { path, file } = fresh();
  const { wit, totals } = createRecords(file, ['Customer']);
  assert.deepEqual(wit.batchSave('Customer', ['{"id":"1","n":1}', '{"id":"2","n":2}']), { added: 2, updated: 0, unchanged: 0, deleted: 0 });
  // Same payload in another key order: unchanged. Changed payload: updated.
  assert.deepEqual(wit.batchSave('Customer', ['{"n":1,"id":"1"}', '{"id":"2","n":3}']), { added: 0, updated: 1, unchanged: 1, deleted: 0 });
  // Unknown, live and repeated deletes.
  assert.deepEqual(wit.batchDelete('Customer', ['1', 'nope']), { added: 0, updated: 0, unchanged: 0, deleted: 1 });
  assert.deepEqual(wit.batchDelete('Customer', ['1']), { added: 0, updated: 0, unchanged: 0, deleted: 0 });
  // A deleted id saved again, even unchanged, comes back as updated.
  assert.deepEqual(wit.batchSave('Customer', ['{"id":"1","n":1}']), { added: 0, updated: 1, unchanged: 0, deleted: 0 });
  assert.deepEqual(totals, { added: 2, updated: 2, unchanged: 1, deleted: 1 });
  const onDisk = JSON.parse(readFileSync(path, 'utf8'));
  assert.deepEqual(onDisk, {
    checkpoint: null,
    records: { Customer: { 1: { record: { id: '1', n: 1 }, deleted: false }, 2: { record: { id: '2', n: 3 }, deleted: false } } },
  });
});

test('bad batches are refused and change nothing', () => {
  const { file } = fresh();
  const { wit } = createRecords(file, ['Customer']);
  assert.equal(errorTag(() => wit.batchSave('Invoice', ['{"id":"1"}'])), 'undeclared-model');
  assert.equal(errorTag(() => wit.batchSave('Customer', ['{'])), 'invalid-json');
  assert.equal(errorTag(() => wit.batchSave('Customer', ['[1]'])), 'invalid-json');
  assert.equal(errorTag(() => wit.batchSave('Customer', ['{"id":1}'])), 'invalid-id');
  assert.equal(errorTag(() => wit.batchSave('Customer', ['{"id":""}'])), 'invalid-id');
  assert.equal(errorTag(() => wit.batchSave('Customer', ['{"id":"ok"}', '{"id":"x"}', '{"id":"x"}'])), 'duplicate-id');
  assert.equal(errorTag(() => wit.batchDelete('Customer', ['a', 'a'])), 'duplicate-id');
  assert.deepEqual(file.state, { checkpoint: null, records: {} });
});

test('an id like __proto__ is just another key', () => {
  const { path, file } = fresh();
  const { wit } = createRecords(file, ['Customer']);
  assert.equal(wit.batchSave('Customer', ['{"id":"__proto__","n":1}']).added, 1);
  assert.equal(new StateFile(path).state.records.Customer.__proto__.record.n, 1);
});

test('a store failure is a `store` error and rolls the batch back', () => {
  const { file } = fresh();
  const { wit } = createRecords(file, ['Customer']);
  file.path = '/nonexistent-dir/state.json';
  assert.equal(errorTag(() => wit.batchSave('Customer', ['{"id":"1"}'])), 'store');
  assert.deepEqual(file.state.records, {});
});

test('the checkpoint survives a restart; corrupt files are refused', () => {
  const { path, file } = fresh();
  const checkpoint = createCheckpoint(file);
  assert.equal(checkpoint.get(), undefined);
  checkpoint.save('{"at":"x"}');
  assert.equal(createCheckpoint(new StateFile(path)).get(), '{"at":"x"}');
  writeFileSync(path, '{"checkpoint": 3, "records": {}}');
  assert.throws(() => new StateFile(path), /corrupt/);
});
