//! What a run writes of the records in PostgreSQL. A write first locks its scope's row
//! (`SELECT … FOR UPDATE`) and hands out timestamps under that lock, so the
//! transactions of one scope commit in timestamp order: a reader paging by
//! cursor never misses a record committed later with a smaller timestamp.
//! Batches are sent as arrays (`unnest`): a few round trips per batch, not
//! per record.

use std::collections::HashMap;
use tokio_postgres::Transaction;

use super::{wait, Shared};
use crate::store::sql::records::{
    ABANDON_LISTING, BEGIN_LISTING, CLOSE_LISTING, CREATE_SCOPE, SAVE_CLOCK, SCOPE, UNSEEN,
};
use crate::store::{BatchOutcome, RecordWrites, Scope, StoreError, ValidRecord};
use crate::time::now_us;

pub struct PgRecords {
    connection: Shared,
}

impl PgRecords {
    pub(super) fn new(connection: Shared) -> Self {
        PgRecords { connection }
    }
}

/// The scope's row, locked for the transaction.
struct ScopeRow {
    id: i64,
    last_us: i64,
    open_listing: Option<i64>,
}

impl ScopeRow {
    fn tick(&mut self) -> i64 {
        self.last_us = now_us().max(self.last_us + 1);
        self.last_us
    }
}

async fn lock_scope(tx: &Transaction<'_>, scope: &Scope) -> Result<ScopeRow, StoreError> {
    tx.execute(CREATE_SCOPE, &[&scope.connection, &scope.model]).await?;
    let row = tx.query_one(&format!("{SCOPE} FOR UPDATE"), &[&scope.connection, &scope.model]).await?;
    Ok(ScopeRow { id: row.get(0), last_us: row.get(1), open_listing: row.get(2) })
}

/// The scope's row if it exists and has `listing` open, locked.
async fn lock_open_scope(tx: &Transaction<'_>, scope: &Scope, listing: u64) -> Result<ScopeRow, StoreError> {
    let row = tx.query_opt(&format!("{SCOPE} FOR UPDATE"), &[&scope.connection, &scope.model]).await?;
    let row = row.map(|r| ScopeRow { id: r.get(0), last_us: r.get(1), open_listing: r.get(2) });
    match row {
        Some(row) if row.open_listing == Some(listing as i64) => Ok(row),
        other => Err(StoreError::NoListing {
            model: scope.model.clone(),
            listing,
            open: other.and_then(|r| r.open_listing).map(|l| l as u64),
        }),
    }
}

async fn save_clock(tx: &Transaction<'_>, scope: &ScopeRow) -> Result<(), StoreError> {
    tx.execute(SAVE_CLOCK, &[&scope.last_us, &scope.id]).await?;
    Ok(())
}

async fn soft_delete(tx: &Transaction<'_>, scope: &mut ScopeRow, ids: &[String]) -> Result<u32, StoreError> {
    let live: Vec<String> = tx
        .query(
            "SELECT id FROM records WHERE scope = $1 AND id = ANY($2) AND deleted_at IS NULL ORDER BY id",
            &[&scope.id, &ids],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    if live.is_empty() {
        return Ok(0);
    }
    let ticks: Vec<i64> = live.iter().map(|_| scope.tick()).collect();
    tx.execute(
        "UPDATE records r SET deleted_at = d.at, last_modified_at = d.at, last_action = 'DELETED'
         FROM unnest($2::text[], $3::bigint[]) AS d(id, at) WHERE r.scope = $1 AND r.id = d.id",
        &[&scope.id, &live, &ticks],
    )
    .await?;
    Ok(live.len() as u32)
}

impl RecordWrites for PgRecords {
    fn save(&mut self, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let mut row = lock_scope(&tx, scope).await?;
            let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
            let existing: HashMap<String, (Vec<u8>, bool)> = tx
                .query(
                    "SELECT id, hash, deleted_at IS NOT NULL FROM records WHERE scope = $1 AND id = ANY($2)",
                    &[&row.id, &ids],
                )
                .await?
                .into_iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect();
            let mut outcome = BatchOutcome::default();
            let (mut new_ids, mut new_json, mut new_hash, mut new_at) = (vec![], vec![], vec![], vec![]);
            let (mut upd_ids, mut upd_json, mut upd_hash, mut upd_at) = (vec![], vec![], vec![], vec![]);
            let mut seen = vec![];
            for record in records {
                match existing.get(&record.id) {
                    None => {
                        new_ids.push(record.id.as_str());
                        new_json.push(record.json.as_str());
                        new_hash.push(&record.hash[..]);
                        new_at.push(row.tick());
                        outcome.added += 1;
                    }
                    Some((hash, deleted)) if *deleted || hash[..] != record.hash[..] => {
                        upd_ids.push(record.id.as_str());
                        upd_json.push(record.json.as_str());
                        upd_hash.push(&record.hash[..]);
                        upd_at.push(row.tick());
                        outcome.updated += 1;
                    }
                    Some(_) => {
                        seen.push(record.id.as_str());
                        outcome.unchanged += 1;
                    }
                }
            }
            if !new_ids.is_empty() {
                tx.execute(
                    "INSERT INTO records (scope, id, json, hash, first_seen_at, last_modified_at, last_action, deleted_at, listing)
                     SELECT $1, n.id, n.json, n.hash, n.at, n.at, 'ADDED', NULL, $6
                     FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[]) AS n(id, json, hash, at)",
                    &[&row.id, &new_ids, &new_json, &new_hash, &new_at, &row.open_listing],
                )
                .await?;
            }
            if !upd_ids.is_empty() {
                tx.execute(
                    "UPDATE records r SET json = u.json, hash = u.hash, last_modified_at = u.at, last_action = 'UPDATED',
                            deleted_at = NULL, listing = coalesce($6, r.listing)
                     FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[]) AS u(id, json, hash, at)
                     WHERE r.scope = $1 AND r.id = u.id",
                    &[&row.id, &upd_ids, &upd_json, &upd_hash, &upd_at, &row.open_listing],
                )
                .await?;
            }
            if let (Some(listing), false) = (row.open_listing, seen.is_empty()) {
                // Unchanged, but seen: a listing must not delete them.
                tx.execute(
                    "UPDATE records SET listing = $3 WHERE scope = $1 AND id = ANY($2)",
                    &[&row.id, &seen, &listing],
                )
                .await?;
            }
            save_clock(&tx, &row).await?;
            tx.commit().await?;
            Ok(outcome)
        })
    }

    fn delete(&mut self, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let mut row = lock_scope(&tx, scope).await?;
            let deleted = soft_delete(&tx, &mut row, ids).await?;
            save_clock(&tx, &row).await?;
            tx.commit().await?;
            Ok(BatchOutcome { deleted, ..Default::default() })
        })
    }

    fn begin_listing(&mut self, scope: &Scope) -> Result<u64, StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let row = lock_scope(&tx, scope).await?;
            let listing: i64 = tx.query_one(BEGIN_LISTING, &[&row.id]).await?.get(0);
            tx.commit().await?;
            Ok(listing as u64)
        })
    }

    fn current_listing(&mut self, scope: &Scope) -> Result<Option<u64>, StoreError> {
        let client = self.connection.lock();
        let row = wait(client.query_opt(SCOPE, &[&scope.connection, &scope.model]))?;
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(2)).map(|l| l as u64))
    }

    fn keep(&mut self, scope: &Scope, listing: u64, ids: &[String]) -> Result<(), StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let row = lock_open_scope(&tx, scope, listing).await?;
            tx.execute(
                "UPDATE records SET listing = $3 WHERE scope = $1 AND id = ANY($2) AND deleted_at IS NULL",
                &[&row.id, &ids, &(listing as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn end_listing(&mut self, scope: &Scope, listing: u64) -> Result<BatchOutcome, StoreError> {
        let mut client = self.connection.lock();
        wait(async {
            let tx = client.transaction().await?;
            let mut row = lock_open_scope(&tx, scope, listing).await?;
            let unseen: Vec<String> =
                tx.query(UNSEEN, &[&row.id, &(listing as i64)]).await?.into_iter().map(|r| r.get(0)).collect();
            let deleted = soft_delete(&tx, &mut row, &unseen).await?;
            tx.execute(CLOSE_LISTING, &[&row.id]).await?;
            save_clock(&tx, &row).await?;
            tx.commit().await?;
            Ok(BatchOutcome { deleted, ..Default::default() })
        })
    }

    fn abandon_listing(&mut self, scope: &Scope, listing: u64) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(client.execute(ABANDON_LISTING, &[&scope.connection, &scope.model, &(listing as i64)]))?;
        Ok(())
    }
}
