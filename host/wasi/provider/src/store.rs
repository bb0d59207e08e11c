//! Records, listings and checkpoints in `/state/sync.sqlite`, in sync-host's
//! own schema (migrated from `host/migrations/sqlite`, the one schema
//! source), so `sync-host serve --db <state>/sync.sqlite` serves what a stock
//! WASI host synced.
//!
//! COPIED from `host/src/store/sqlite/records.rs` and `checkpoints.rs`: the
//! same SQL statement for statement, over a plain `Connection` instead of
//! sync-host's pooled one (this crate cannot link sync-host: wasmtime, tokio,
//! r2d2 do not build for wasm32). Keep the two in step until the shared crate
//! (`sync-core`) exists; the conformance component checks both.
//!
//! SQLite in WASI has no file locks, so the file is opened with the
//! `unix-none` VFS (no lock files a `kill -9` could leave behind) in
//! exclusive locking mode (which also lets WAL keep its index in memory: WASI
//! has no shared memory for the `-shm` file). One writer at a time: serve
//! the file after the run, not during it.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};

use crate::migrations;

/// Where the store lives inside the preopened directory.
pub const DATABASE: &str = "/state/sync.sqlite";

/// How a call changed the store (sync-host's `BatchOutcome`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub deleted: u32,
}

impl std::ops::AddAssign for BatchOutcome {
    fn add_assign(&mut self, other: Self) {
        self.added += other.added;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
    }
}

/// A record that passed the checks: id, JSON text, canonical hash.
pub struct ValidRecord {
    pub id: String,
    pub json: String,
    pub hash: [u8; 32],
}

/// The records of one model of one connection.
pub struct Scope {
    pub connection: String,
    pub model: String,
}

/// sync-host's `StoreError`, the variants a run can meet (same texts).
#[derive(Debug)]
pub enum StoreError {
    Backend(String),
    NoListing { model: String, listing: u64, open: Option<u64> },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Backend(m) => write!(f, "store: {m}"),
            StoreError::NoListing { model, listing, open } => {
                let open = match open {
                    Some(open) => format!("listing {open} is"),
                    None => "no listing is".into(),
                };
                write!(f, "listing {listing} of `{model}` is not open ({open})")
            }
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// Opens (creating) the store and brings its schema up to date.
pub fn open() -> Result<Connection, String> {
    if !std::path::Path::new("/state").is_dir() {
        return Err("no /state directory: the host must preopen one (e.g. `wasmtime run --dir <dir>::/state`)".into());
    }
    let mut db = Connection::open_with_flags_and_vfs(DATABASE, OpenFlags::default(), "unix-none")
        .map_err(|e| format!("cannot open {DATABASE}: {e}"))?;
    let pragmas = |db: &Connection| -> rusqlite::Result<()> {
        // First: WAL needs it here (no shared memory for the -shm file).
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // No temporary directory outside /state.
        db.pragma_update(None, "temp_store", "MEMORY")?;
        db.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        db.pragma_update(None, "cache_size", -16_000)?;
        Ok(())
    };
    pragmas(&db).map_err(|e| format!("cannot set up {DATABASE}: {e}"))?;
    migrations::apply(&mut db).map_err(|e| format!("{DATABASE}: {e}"))?;
    Ok(db)
}

fn now_us() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Hands out strictly increasing timestamps within one scope.
struct Clock {
    last_us: i64,
}

impl Clock {
    fn tick(&mut self) -> i64 {
        self.last_us = now_us().max(self.last_us + 1);
        self.last_us
    }
}

/// The scope's row, created on first use: its id, clock and open listing.
struct ScopeRow {
    id: i64,
    clock: Clock,
    open_listing: Option<i64>,
}

fn scope_row(tx: &Transaction<'_>, scope: &Scope) -> Result<ScopeRow, StoreError> {
    tx.execute(
        "INSERT INTO scopes (connection, model) VALUES (?1, ?2) ON CONFLICT (connection, model) DO NOTHING",
        params![scope.connection, scope.model],
    )?;
    let (id, clock_us, open_listing) = tx.query_row(
        "SELECT id, clock_us, open_listing FROM scopes WHERE connection = ?1 AND model = ?2",
        params![scope.connection, scope.model],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?)),
    )?;
    Ok(ScopeRow { id, clock: Clock { last_us: clock_us }, open_listing })
}

fn save_clock(tx: &Transaction<'_>, scope: &ScopeRow) -> Result<(), StoreError> {
    tx.execute("UPDATE scopes SET clock_us = ?1 WHERE id = ?2", params![scope.clock.last_us, scope.id])?;
    Ok(())
}

/// Soft-deletes live `ids`, each with its own timestamp; returns how many changed.
fn soft_delete(tx: &Transaction<'_>, scope: &mut ScopeRow, ids: &[String]) -> Result<u32, StoreError> {
    let mut delete = tx.prepare_cached(
        "UPDATE records SET deleted_at = ?3, last_modified_at = ?3, last_action = 'DELETED'
         WHERE scope = ?1 AND id = ?2 AND deleted_at IS NULL",
    )?;
    let mut deleted = 0;
    for id in ids {
        deleted += delete.execute(params![scope.id, id, scope.clock.tick()])? as u32;
    }
    Ok(deleted)
}

/// The scope's row, which must have `listing` open.
fn open_scope(tx: &Transaction<'_>, scope: &Scope, listing: u64) -> Result<ScopeRow, StoreError> {
    let row = tx
        .query_row(
            "SELECT id, clock_us, open_listing FROM scopes WHERE connection = ?1 AND model = ?2",
            params![scope.connection, scope.model],
            |row| Ok(ScopeRow { id: row.get(0)?, clock: Clock { last_us: row.get(1)? }, open_listing: row.get(2)? }),
        )
        .optional()?;
    match row {
        Some(row) if row.open_listing == Some(listing as i64) => Ok(row),
        other => Err(StoreError::NoListing {
            model: scope.model.clone(),
            listing,
            open: other.and_then(|r| r.open_listing).map(|l| l as u64),
        }),
    }
}

pub fn save(db: &mut Connection, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut row = scope_row(&tx, scope)?;
    let mut outcome = BatchOutcome::default();
    {
        let mut current =
            tx.prepare_cached("SELECT hash, deleted_at IS NOT NULL FROM records WHERE scope = ?1 AND id = ?2")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO records (scope, id, json, hash, first_seen_at, last_modified_at, last_action, deleted_at, listing)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'ADDED', NULL, ?6)",
        )?;
        let mut update = tx.prepare_cached(
            "UPDATE records SET json = ?3, hash = ?4, last_modified_at = ?5, last_action = 'UPDATED', deleted_at = NULL,
                    listing = coalesce(?6, listing)
             WHERE scope = ?1 AND id = ?2",
        )?;
        let mut seen = tx.prepare_cached("UPDATE records SET listing = ?3 WHERE scope = ?1 AND id = ?2")?;
        for record in records {
            let existing: Option<(Vec<u8>, bool)> =
                current.query_row(params![row.id, record.id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            match existing {
                None => {
                    let at = row.clock.tick();
                    insert.execute(params![row.id, record.id, record.json, &record.hash[..], at, row.open_listing])?;
                    outcome.added += 1;
                }
                Some((hash, deleted)) if deleted || hash != record.hash => {
                    let at = row.clock.tick();
                    update.execute(params![row.id, record.id, record.json, &record.hash[..], at, row.open_listing])?;
                    outcome.updated += 1;
                }
                Some(_) => {
                    // Unchanged, but seen: a listing must not delete it.
                    if let Some(listing) = row.open_listing {
                        seen.execute(params![row.id, record.id, listing])?;
                    }
                    outcome.unchanged += 1;
                }
            }
        }
    }
    save_clock(&tx, &row)?;
    tx.commit()?;
    Ok(outcome)
}

pub fn delete(db: &mut Connection, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut row = scope_row(&tx, scope)?;
    let deleted = soft_delete(&tx, &mut row, ids)?;
    save_clock(&tx, &row)?;
    tx.commit()?;
    Ok(BatchOutcome { deleted, ..Default::default() })
}

pub fn begin_listing(db: &mut Connection, scope: &Scope) -> Result<u64, StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = scope_row(&tx, scope)?;
    let listing: i64 = tx.query_row(
        "UPDATE scopes SET last_listing = last_listing + 1, open_listing = last_listing + 1 WHERE id = ?1
         RETURNING open_listing",
        params![row.id],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok(listing as u64)
}

pub fn current_listing(db: &mut Connection, scope: &Scope) -> Result<Option<u64>, StoreError> {
    let open: Option<Option<i64>> = db
        .query_row(
            "SELECT open_listing FROM scopes WHERE connection = ?1 AND model = ?2",
            params![scope.connection, scope.model],
            |r| r.get(0),
        )
        .optional()?;
    Ok(open.flatten().map(|l| l as u64))
}

pub fn keep(db: &mut Connection, scope: &Scope, listing: u64, ids: &[String]) -> Result<(), StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row = open_scope(&tx, scope, listing)?;
    {
        let mut seen =
            tx.prepare_cached("UPDATE records SET listing = ?3 WHERE scope = ?1 AND id = ?2 AND deleted_at IS NULL")?;
        for id in ids {
            seen.execute(params![row.id, id, listing as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn end_listing(db: &mut Connection, scope: &Scope, listing: u64) -> Result<BatchOutcome, StoreError> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut row = open_scope(&tx, scope, listing)?;
    let unseen: Vec<String> = {
        let mut statement = tx.prepare(
            "SELECT id FROM records WHERE scope = ?1 AND deleted_at IS NULL AND (listing IS NULL OR listing <> ?2)
             ORDER BY id",
        )?;
        let ids = statement.query_map(params![row.id, listing as i64], |r| r.get(0))?;
        ids.collect::<Result<_, _>>()?
    };
    let deleted = soft_delete(&tx, &mut row, &unseen)?;
    tx.execute("UPDATE scopes SET open_listing = NULL WHERE id = ?1", params![row.id])?;
    save_clock(&tx, &row)?;
    tx.commit()?;
    Ok(BatchOutcome { deleted, ..Default::default() })
}

pub fn abandon_listing(db: &mut Connection, scope: &Scope, listing: u64) -> Result<(), StoreError> {
    db.execute(
        "UPDATE scopes SET open_listing = NULL WHERE connection = ?1 AND model = ?2 AND open_listing = ?3",
        params![scope.connection, scope.model, listing as i64],
    )?;
    Ok(())
}

pub fn checkpoint_get(db: &mut Connection, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
    Ok(db
        .query_row(
            "SELECT value FROM checkpoints WHERE connection = ?1 AND sync = ?2",
            params![connection, sync],
            |row| row.get(0),
        )
        .optional()?)
}

pub fn checkpoint_save(db: &mut Connection, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO checkpoints (connection, sync, value, saved_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (connection, sync) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at",
        params![connection, sync, value, now_us()],
    )?;
    Ok(())
}
