//! Records in SQLite. Every write takes the write lock when it begins
//! (`BEGIN IMMEDIATE`), so a concurrent writer waits (busy timeout) instead of
//! failing on a read-then-write upgrade. Records of a (connection, model) pair share an integer
//! `scope`, so the ordering index is `(scope, last_modified_at, id)` over
//! integers and short text: the shape of that index is what bounds write
//! throughput.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::{now_us, Shared};
use crate::store::sql::records::{
    ABANDON_LISTING, BEGIN_LISTING, CLOSE_LISTING, CREATE_SCOPE, SAVE_CLOCK, SCOPE, UNSEEN,
};
use crate::store::sql::Dialect;
use crate::store::{BatchOutcome, RecordWrites, Scope, StoreError, ValidRecord};

/// A shared statement in SQLite's placeholders.
fn sqlite(sql: &str) -> String {
    Dialect::Sqlite.statement(sql).into_owned()
}

/// The records store over one pooled connection (shared with the run's
/// checkpoints, see [`Shared`]).
pub struct SqliteRecords {
    connection: Shared,
}

impl SqliteRecords {
    pub(super) fn new(connection: Shared) -> Self {
        SqliteRecords { connection }
    }
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
    tx.prepare_cached(&sqlite(CREATE_SCOPE))?.execute(params![scope.connection, scope.model])?;
    let (id, clock_us, open_listing) =
        tx.prepare_cached(&sqlite(SCOPE))?.query_row(params![scope.connection, scope.model], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?))
        })?;
    Ok(ScopeRow { id, clock: Clock { last_us: clock_us }, open_listing })
}

fn save_clock(tx: &Transaction<'_>, scope: &ScopeRow) -> Result<(), StoreError> {
    tx.prepare_cached(&sqlite(SAVE_CLOCK))?.execute(params![scope.clock.last_us, scope.id])?;
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
        // The timestamp is only used when a row changes; a skipped tick is harmless.
        deleted += delete.execute(params![scope.id, id, scope.clock.tick()])? as u32;
    }
    Ok(deleted)
}

/// The scope's row, which must have `listing` open (a scope never written has
/// no listing, and is not created by asking).
fn open_scope(tx: &Transaction<'_>, scope: &Scope, listing: u64) -> Result<ScopeRow, StoreError> {
    let row = tx
        .prepare_cached(&sqlite(SCOPE))?
        .query_row(params![scope.connection, scope.model], |row| {
            Ok(ScopeRow { id: row.get(0)?, clock: Clock { last_us: row.get(1)? }, open_listing: row.get(2)? })
        })
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

impl RecordWrites for SqliteRecords {
    fn save(&mut self, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                        insert.execute(params![
                            row.id,
                            record.id,
                            record.json,
                            &record.hash[..],
                            at,
                            row.open_listing
                        ])?;
                        outcome.added += 1;
                    }
                    Some((hash, deleted)) if deleted || hash != record.hash => {
                        let at = row.clock.tick();
                        update.execute(params![
                            row.id,
                            record.id,
                            record.json,
                            &record.hash[..],
                            at,
                            row.open_listing
                        ])?;
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

    fn delete(&mut self, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut row = scope_row(&tx, scope)?;
        let deleted = soft_delete(&tx, &mut row, ids)?;
        save_clock(&tx, &row)?;
        tx.commit()?;
        Ok(BatchOutcome { deleted, ..Default::default() })
    }

    fn begin_listing(&mut self, scope: &Scope) -> Result<u64, StoreError> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = scope_row(&tx, scope)?;
        let listing: i64 = tx.query_row(&sqlite(BEGIN_LISTING), params![row.id], |r| r.get(0))?;
        tx.commit()?;
        Ok(listing as u64)
    }

    fn current_listing(&mut self, scope: &Scope) -> Result<Option<u64>, StoreError> {
        let open: Option<Option<i64>> = self
            .connection
            .lock()
            .query_row(&sqlite(SCOPE), params![scope.connection, scope.model], |r| r.get(2))
            .optional()?;
        Ok(open.flatten().map(|l| l as u64))
    }

    fn keep(&mut self, scope: &Scope, listing: u64, ids: &[String]) -> Result<(), StoreError> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = open_scope(&tx, scope, listing)?;
        {
            let mut seen = tx.prepare_cached(
                "UPDATE records SET listing = ?3 WHERE scope = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?;
            for id in ids {
                seen.execute(params![row.id, id, listing as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn end_listing(&mut self, scope: &Scope, listing: u64) -> Result<BatchOutcome, StoreError> {
        let mut connection = self.connection.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut row = open_scope(&tx, scope, listing)?;
        let unseen: Vec<String> = {
            let mut statement = tx.prepare(&sqlite(UNSEEN))?;
            let ids = statement.query_map(params![row.id, listing as i64], |r| r.get(0))?;
            ids.collect::<Result<_, _>>()?
        };
        let deleted = soft_delete(&tx, &mut row, &unseen)?;
        tx.execute(&sqlite(CLOSE_LISTING), params![row.id])?;
        save_clock(&tx, &row)?;
        tx.commit()?;
        Ok(BatchOutcome { deleted, ..Default::default() })
    }

    fn abandon_listing(&mut self, scope: &Scope, listing: u64) -> Result<(), StoreError> {
        self.connection
            .lock()
            .execute(&sqlite(ABANDON_LISTING), params![scope.connection, scope.model, listing as i64])?;
        Ok(())
    }
}
