/**
 * The records, listing and checkpoint store, on SQLite: the same schema and
 * semantics as the Rust host's store, so a database written here can be
 * served by `sync-host serve` unchanged, and the other way round.
 *
 * The schema is the migration files in `host/migrations/sqlite/`, applied in
 * file-name order and read at run time (they are the single source of truth).
 * `PRAGMA user_version` holds the number of the last applied file.
 *
 * Records of a (connection, model) pair share an integer `scope`. Timestamps
 * are integer microseconds since the Unix epoch, strictly increasing within a
 * scope (`scopes.clock_us` holds the last one handed out), so
 * (`last_modified_at`, `id`) orders the changes of a scope totally.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the migrations live: `host/migrations/sqlite`, next to the Rust host. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/sqlite/', import.meta.url));

/** A store failure, carried to the guest as the WIT `store` error case. */
export class StoreError extends Error {
  constructor(message) {
    super(message);
    this.name = 'StoreError';
  }
}

/**
 * The migration files, in the order they apply: `NNNN_name.sql`, numbered
 * from 1 without gaps.
 *
 * @param {string} dir
 * @returns {{ version: number, name: string, path: string }[]}
 */
export function listMigrations(dir = MIGRATIONS_DIR) {
  let names;
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.sql'));
  } catch (error) {
    throw new StoreError(`cannot read the schema migrations in ${dir}: ${error.message}`);
  }
  // Plain code-unit order is byte order here: the names are checked to be ASCII.
  names.sort();
  return names.map((name, index) => {
    const match = /^(\d+)_[A-Za-z0-9_.-]*\.sql$/.exec(name);
    if (!match) throw new StoreError(`migration file ${name} in ${dir} is not named NNNN_name.sql`);
    const version = Number(match[1]);
    if (version !== index + 1) {
      throw new StoreError(`migration file ${name} in ${dir} should be number ${index + 1} (the files are numbered 1, 2, ... in order)`);
    }
    return { version, name, path: join(dir, name) };
  });
}

/**
 * Brings the database's schema up to date: applies, in one `BEGIN IMMEDIATE`
 * transaction, every migration newer than its `user_version`, then sets
 * `user_version` to the last one. A database whose `user_version` is newer
 * than every migration known here was written by a newer host: refused.
 *
 * @param {import('better-sqlite3').Database} db
 * @param {string} label the database's name, for messages
 * @param {string} dir
 */
export function migrate(db, label, dir = MIGRATIONS_DIR) {
  const migrations = listMigrations(dir);
  const latest = migrations.length;
  const check = (version) => {
    if (version > latest) {
      throw new StoreError(
        `database ${label} has schema version ${version}, but this host knows versions up to ${latest}: ` +
          'it was written by a newer host; upgrade this one',
      );
    }
  };
  const current = db.pragma('user_version', { simple: true });
  check(current);
  if (current === latest) return;
  // Read again under the write lock: another process may have migrated meanwhile.
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true });
    check(version);
    for (const migration of migrations.filter((m) => m.version > version)) {
      try {
        db.exec(readFileSync(migration.path, 'utf8'));
      } catch (error) {
        throw new StoreError(`cannot apply migration ${migration.name} to ${label}: ${error.message}`);
      }
    }
    // PRAGMA takes no bound parameters; `latest` is an integer we computed.
    db.pragma(`user_version = ${latest}`);
  }).immediate();
}

/**
 * Microseconds since the Unix epoch, now (the wall clock, as the Rust host's
 * `SystemTime::now`; millisecond resolution is enough, as `Clock` makes the
 * timestamps of a scope strictly increase anyway).
 */
export const nowUs = () => Date.now() * 1000;

/**
 * JSON text with object keys sorted by their UTF-8 bytes (as Rust sorts
 * strings) and no whitespace; strings and numbers as `JSON.stringify` writes
 * them. The Rust host hashes the same text (`hash_canonical`).
 *
 * @param {unknown} value a parsed JSON value
 */
export function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value)
      .map((key) => [key, Buffer.from(key, 'utf8')])
      .sort((a, b) => Buffer.compare(a[1], b[1]))
      .map(([key]) => key);
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * SHA-256 (32 raw bytes) of the record's canonical JSON: what decides
 * whether a saved record changed.
 *
 * @param {unknown} value a parsed JSON value
 */
export const recordHash = (value) => createHash('sha256').update(canonicalJson(value), 'utf8').digest();

const zero = () => ({ added: 0, updated: 0, unchanged: 0, deleted: 0 });

/** Hands out strictly increasing timestamps within one transaction. */
class Clock {
  constructor(lastUs) {
    this.lastUs = lastUs;
  }

  tick() {
    this.lastUs = Math.max(nowUs(), this.lastUs + 1);
    return this.lastUs;
  }
}

/**
 * One SQLite database: the records of every (connection, model), their
 * listings, and the checkpoints. Each method is one transaction.
 */
export class SqliteStore {
  /**
   * Opens (creating if missing) the database file and migrates it.
   *
   * @param {string} path a file, or `:memory:`
   */
  constructor(path) {
    this.path = path;
    try {
      this.db = new Database(path);
    } catch (error) {
      throw new StoreError(`cannot open database ${path}: ${error.message}`);
    }
    try {
      // WAL lets `sync-host serve` read while a run writes; NORMAL keeps the
      // order of commits on a crash. Same settings as the Rust host.
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 10000');
      migrate(this.db, path);
    } catch (error) {
      this.db.close();
      if (error instanceof StoreError) throw error;
      // The JSON state file of Node hosts before the SQLite store, say.
      const hint = error.code === 'SQLITE_NOTADB' ? ' (the store is a SQLite database; give a new file name)' : '';
      throw new StoreError(`cannot open database ${path}: ${error.message}${hint}`);
    }
    this.prepare();
  }

  prepare() {
    const sql = (text) => this.db.prepare(text);
    this.sql = {
      ensureScope: sql('INSERT INTO scopes (connection, model) VALUES (?, ?) ON CONFLICT (connection, model) DO NOTHING'),
      scope: sql('SELECT id, clock_us, open_listing, last_listing FROM scopes WHERE connection = ? AND model = ?'),
      saveClock: sql('UPDATE scopes SET clock_us = ? WHERE id = ?'),
      current: sql('SELECT hash, deleted_at IS NOT NULL AS deleted, listing FROM records WHERE scope = ? AND id = ?'),
      insert: sql(
        `INSERT INTO records (scope, id, json, hash, first_seen_at, last_modified_at, last_action, deleted_at, listing)
         VALUES (?, ?, ?, ?, ?, ?, 'ADDED', NULL, ?)`,
      ),
      update: sql(
        `UPDATE records SET json = ?, hash = ?, last_modified_at = ?, last_action = 'UPDATED', deleted_at = NULL,
                            listing = coalesce(?, listing)
         WHERE scope = ? AND id = ?`,
      ),
      see: sql('UPDATE records SET listing = ? WHERE scope = ? AND id = ?'),
      keep: sql('UPDATE records SET listing = ? WHERE scope = ? AND id = ? AND deleted_at IS NULL'),
      delete: sql(
        `UPDATE records SET deleted_at = ?, last_modified_at = ?, last_action = 'DELETED'
         WHERE scope = ? AND id = ? AND deleted_at IS NULL`,
      ),
      begin: sql('UPDATE scopes SET last_listing = last_listing + 1, open_listing = last_listing + 1 WHERE id = ? RETURNING open_listing'),
      close: sql('UPDATE scopes SET open_listing = NULL WHERE id = ?'),
      unseen: sql('SELECT id FROM records WHERE scope = ? AND deleted_at IS NULL AND (listing IS NULL OR listing <> ?) ORDER BY id').pluck(),
      checkpoint: sql('SELECT value FROM checkpoints WHERE connection = ? AND sync = ?').pluck(),
      saveCheckpoint: sql(
        `INSERT INTO checkpoints (connection, sync, value, saved_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (connection, sync) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at`,
      ),
    };
  }

  /**
   * Runs `fn` in one write transaction (`BEGIN IMMEDIATE`: the write lock is
   * taken up front, so the busy timeout applies rather than a failed upgrade).
   * Any SQLite failure rolls it back and becomes a `StoreError`.
   */
  write(fn) {
    try {
      return this.db.transaction(fn).immediate();
    } catch (error) {
      throw this.failure(error);
    }
  }

  /** Runs `fn` in one read transaction. */
  read(fn) {
    try {
      return this.db.transaction(fn).deferred();
    } catch (error) {
      throw this.failure(error);
    }
  }

  failure(error) {
    if (error instanceof StoreError || !(error instanceof Database.SqliteError)) return error;
    return new StoreError(`records store: ${error.message}; the call was rolled back`);
  }

  /** The scope of (connection, model), created if new, with its clock. Inside a write transaction. */
  scope(connection, model) {
    this.sql.ensureScope.run(connection, model);
    const row = this.sql.scope.get(connection, model);
    return { id: row.id, clock: new Clock(row.clock_us), openListing: row.open_listing, lastListing: row.last_listing };
  }

  /** The scope if it exists (no write), or undefined. */
  existingScope(connection, model) {
    const row = this.sql.scope.get(connection, model);
    return row && { id: row.id, clock: new Clock(row.clock_us), openListing: row.open_listing, lastListing: row.last_listing };
  }

  /**
   * Saves validated records: a new id is ADDED; a changed payload (by hash),
   * or a deleted id, is UPDATED; an identical payload is unchanged. While the
   * scope has an open listing, every record of the batch is seen by it.
   *
   * @param {string} connection
   * @param {string} model
   * @param {{ id: string, json: string, hash: Buffer }[]} records
   */
  save(connection, model, records) {
    const outcome = zero();
    if (records.length === 0) return outcome;
    return this.write(() => {
      const scope = this.scope(connection, model);
      const listing = scope.openListing;
      for (const record of records) {
        const existing = this.sql.current.get(scope.id, record.id);
        if (existing === undefined) {
          const at = scope.clock.tick();
          this.sql.insert.run(scope.id, record.id, record.json, record.hash, at, at, listing);
          outcome.added += 1;
        } else if (existing.deleted || !record.hash.equals(existing.hash)) {
          this.sql.update.run(record.json, record.hash, scope.clock.tick(), listing, scope.id, record.id);
          outcome.updated += 1;
        } else {
          // Unchanged; still seen by the open listing (written only if not yet).
          if (listing !== null && existing.listing !== listing) this.sql.see.run(listing, scope.id, record.id);
          outcome.unchanged += 1;
        }
      }
      this.sql.saveClock.run(scope.clock.lastUs, scope.id);
      return outcome;
    });
  }

  /** Soft-deletes each live id of the scope with its own tick; counts the rows changed. */
  deleteIds(scope, ids) {
    let deleted = 0;
    for (const id of ids) {
      const at = scope.clock.tick();
      deleted += this.sql.delete.run(at, at, scope.id, id).changes;
    }
    return deleted;
  }

  /**
   * Soft-deletes records by id: the payload is kept. Unknown and already
   * deleted ids do nothing.
   *
   * @param {string[]} ids validated (non-empty, distinct)
   */
  delete(connection, model, ids) {
    const outcome = zero();
    if (ids.length === 0) return outcome;
    return this.write(() => {
      const scope = this.scope(connection, model);
      outcome.deleted = this.deleteIds(scope, ids);
      this.sql.saveClock.run(scope.clock.lastUs, scope.id);
      return outcome;
    });
  }

  /** Opens a new listing of the scope (a listing already open is superseded); returns its id. */
  beginListing(connection, model) {
    return this.write(() => {
      const scope = this.scope(connection, model);
      return BigInt(this.sql.begin.get(scope.id).open_listing);
    });
  }

  /** The id of the open listing of the scope, or undefined. */
  currentListing(connection, model) {
    return this.read(() => {
      const open = this.existingScope(connection, model)?.openListing;
      return open === null || open === undefined ? undefined : BigInt(open);
    });
  }

  /**
   * Counts live ids as seen by `listing`. Throws `NoListingError` if it is not
   * the open listing of the scope.
   *
   * @param {bigint} listing
   */
  keep(connection, model, listing, ids) {
    return this.write(() => {
      const scope = this.openScope(connection, model, listing, 'nothing was kept');
      for (const id of ids) this.sql.keep.run(scope.openListing, scope.id, id);
    });
  }

  /**
   * Ends `listing`: soft-deletes every live record of the scope it did not
   * see (in id order, each with its own tick) and closes it. Throws
   * `NoListingError`, deleting nothing, if it is not the open listing.
   *
   * @param {bigint} listing
   */
  endListing(connection, model, listing) {
    return this.write(() => {
      const scope = this.openScope(connection, model, listing, 'nothing was deleted');
      const ids = this.sql.unseen.all(scope.id, scope.openListing);
      const outcome = zero();
      outcome.deleted = this.deleteIds(scope, ids);
      this.sql.close.run(scope.id);
      this.sql.saveClock.run(scope.clock.lastUs, scope.id);
      return outcome;
    });
  }

  /**
   * Closes `listing` without deleting anything, if it is the open one.
   *
   * @param {bigint} listing
   */
  abandonListing(connection, model, listing) {
    this.write(() => {
      const scope = this.existingScope(connection, model);
      if (scope && scope.openListing !== null && BigInt(scope.openListing) === BigInt(listing)) this.sql.close.run(scope.id);
    });
  }

  /** The scope whose open listing is `listing`, or a `NoListingError` saying what is open. */
  openScope(connection, model, listing, consequence) {
    const scope = this.existingScope(connection, model);
    const open = scope?.openListing ?? null;
    if (open === null || BigInt(open) !== BigInt(listing)) {
      const which = open === null ? `no listing of \`${model}\` is open` : `the open listing of \`${model}\` is ${open}`;
      throw new NoListingError(`listing ${listing} is not open (${which}); ${consequence}`);
    }
    return scope;
  }

  /** The checkpoint of (connection, sync), or undefined. */
  checkpoint(connection, sync) {
    try {
      return this.sql.checkpoint.get(connection, sync) ?? undefined;
    } catch (error) {
      throw this.failure(error);
    }
  }

  /** Replaces the checkpoint of (connection, sync), atomically. */
  saveCheckpoint(connection, sync, value) {
    this.write(() => this.sql.saveCheckpoint.run(connection, sync, value, nowUs()));
  }

  close() {
    if (this.db.open) this.db.close();
  }
}

/** The listing named is not the open listing of the model (the WIT `no-listing` case). */
export class NoListingError extends Error {
  constructor(message) {
    super(message);
    this.name = 'NoListingError';
  }
}
