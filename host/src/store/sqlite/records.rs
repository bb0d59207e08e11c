//! Records in SQLite. Every write takes the write lock when it begins
//! (`BEGIN IMMEDIATE`), so a concurrent writer waits (busy timeout) instead of
//! failing on a read-then-write upgrade. Records of a (connection, model) pair share an integer
//! `scope`, so the ordering index is `(scope, last_modified_at, id)` over
//! integers and short text: the shape of that index is what bounds write
//! throughput.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::{now_us, Shared};
use crate::store::{
    BatchOutcome, LastAction, ListPage, ListQuery, RecordStore, Scope, StoreError, StoredRecord, ValidRecord,
};

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
        // The timestamp is only used when a row changes; a skipped tick is harmless.
        deleted += delete.execute(params![scope.id, id, scope.clock.tick()])? as u32;
    }
    Ok(deleted)
}

/// The scope's row, which must have `listing` open (a scope never written has
/// no listing, and is not created by asking).
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

impl RecordStore for SqliteRecords {
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
        let listing: i64 = tx.query_row(
            "UPDATE scopes SET last_listing = last_listing + 1, open_listing = last_listing + 1 WHERE id = ?1
             RETURNING open_listing",
            params![row.id],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(listing as u64)
    }

    fn current_listing(&mut self, scope: &Scope) -> Result<Option<u64>, StoreError> {
        let open: Option<Option<i64>> = self
            .connection
            .lock()
            .query_row(
                "SELECT open_listing FROM scopes WHERE connection = ?1 AND model = ?2",
                params![scope.connection, scope.model],
                |r| r.get(0),
            )
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

    fn abandon_listing(&mut self, scope: &Scope, listing: u64) -> Result<(), StoreError> {
        self.connection.lock().execute(
            "UPDATE scopes SET open_listing = NULL WHERE connection = ?1 AND model = ?2 AND open_listing = ?3",
            params![scope.connection, scope.model, listing as i64],
        )?;
        Ok(())
    }

    fn list(&mut self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError> {
        let connection = self.connection.lock();
        let scope_id: Option<i64> = connection
            .query_row(
                "SELECT id FROM scopes WHERE connection = ?1 AND model = ?2",
                params![scope.connection, scope.model],
                |row| row.get(0),
            )
            .optional()?;
        let Some(scope_id) = scope_id else {
            return Ok(ListPage { records: Vec::new(), has_more: false });
        };
        let (after_us, after_id) = match &query.after {
            Some(p) => (p.last_modified_us, p.id.clone()),
            None => (i64::MIN, String::new()),
        };
        let mut sql = String::from(
            "SELECT id, json, first_seen_at, last_modified_at, last_action, deleted_at FROM records
             WHERE scope = ?1 AND (last_modified_at, id) > (?2, ?3) AND last_modified_at >= ?4",
        );
        if !query.actions.is_empty() {
            let list: Vec<String> = query.actions.iter().map(|a| format!("'{}'", a.as_str())).collect();
            sql.push_str(&format!(" AND last_action IN ({})", list.join(", ")));
        }
        sql.push_str(" ORDER BY last_modified_at, id LIMIT ?5");
        let mut statement = connection.prepare_cached(&sql)?;
        let fetch = i64::from(query.limit) + 1;
        let rows = statement.query_map(
            params![scope_id, after_us, after_id, query.modified_after_us.unwrap_or(i64::MIN), fetch],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            },
        )?;
        let mut records = Vec::with_capacity(query.limit as usize);
        for row in rows {
            let (id, json, first_seen_us, last_modified_us, action, deleted_us) = row?;
            let last_action = LastAction::parse(&action)
                .ok_or_else(|| StoreError::Corrupt(format!("record {id} has last_action {action}")))?;
            records.push(StoredRecord { id, json, first_seen_us, last_modified_us, last_action, deleted_us });
        }
        let has_more = records.len() > query.limit as usize;
        records.truncate(query.limit as usize);
        Ok(ListPage { records, has_more })
    }

    fn connection_exists(&mut self, connection: &str) -> Result<bool, StoreError> {
        Ok(self.connection.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM scopes WHERE connection = ?1)
                 OR EXISTS (SELECT 1 FROM checkpoints WHERE connection = ?1)",
            params![connection],
            |row| row.get(0),
        )?)
    }
}
