//! Records and checkpoints in PostgreSQL. A write first locks its scope's row
//! (`SELECT … FOR UPDATE`) and hands out timestamps under that lock, so the
//! transactions of one scope commit in timestamp order: a reader paging by
//! cursor never misses a record committed later with a smaller timestamp.
//! Batches are sent as arrays (`unnest`): a few round trips per batch, not
//! per record.

use std::collections::HashMap;
use tokio_postgres::Transaction;

use super::{wait, Shared};
use crate::store::{
    BatchOutcome, CheckpointStore, LastAction, ListPage, ListQuery, RecordStore, Scope, StoreError, StoredRecord,
    ValidRecord,
};
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
    tx.execute(
        "INSERT INTO scopes (connection, model) VALUES ($1, $2) ON CONFLICT (connection, model) DO NOTHING",
        &[&scope.connection, &scope.model],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT id, clock_us, open_listing FROM scopes WHERE connection = $1 AND model = $2 FOR UPDATE",
            &[&scope.connection, &scope.model],
        )
        .await?;
    Ok(ScopeRow { id: row.get(0), last_us: row.get(1), open_listing: row.get(2) })
}

/// The scope's row if it exists and has `listing` open, locked.
async fn lock_open_scope(tx: &Transaction<'_>, scope: &Scope, listing: u64) -> Result<ScopeRow, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id, clock_us, open_listing FROM scopes WHERE connection = $1 AND model = $2 FOR UPDATE",
            &[&scope.connection, &scope.model],
        )
        .await?;
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
    tx.execute("UPDATE scopes SET clock_us = $1 WHERE id = $2", &[&scope.last_us, &scope.id]).await?;
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

impl RecordStore for PgRecords {
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
            let listing: i64 = tx
                .query_one(
                    "UPDATE scopes SET last_listing = last_listing + 1, open_listing = last_listing + 1 WHERE id = $1
                     RETURNING open_listing",
                    &[&row.id],
                )
                .await?
                .get(0);
            tx.commit().await?;
            Ok(listing as u64)
        })
    }

    fn current_listing(&mut self, scope: &Scope) -> Result<Option<u64>, StoreError> {
        let client = self.connection.lock();
        let row = wait(client.query_opt(
            "SELECT open_listing FROM scopes WHERE connection = $1 AND model = $2",
            &[&scope.connection, &scope.model],
        ))?;
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)).map(|l| l as u64))
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
            let unseen: Vec<String> = tx
                .query(
                    "SELECT id FROM records WHERE scope = $1 AND deleted_at IS NULL AND (listing IS NULL OR listing <> $2)",
                    &[&row.id, &(listing as i64)],
                )
                .await?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            let deleted = soft_delete(&tx, &mut row, &unseen).await?;
            tx.execute("UPDATE scopes SET open_listing = NULL WHERE id = $1", &[&row.id]).await?;
            save_clock(&tx, &row).await?;
            tx.commit().await?;
            Ok(BatchOutcome { deleted, ..Default::default() })
        })
    }

    fn abandon_listing(&mut self, scope: &Scope, listing: u64) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(client.execute(
            "UPDATE scopes SET open_listing = NULL WHERE connection = $1 AND model = $2 AND open_listing = $3",
            &[&scope.connection, &scope.model, &(listing as i64)],
        ))?;
        Ok(())
    }

    fn list(&mut self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError> {
        let client = self.connection.lock();
        wait(async {
            let Some(scope_row) = client
                .query_opt(
                    "SELECT id FROM scopes WHERE connection = $1 AND model = $2",
                    &[&scope.connection, &scope.model],
                )
                .await?
            else {
                return Ok(ListPage { records: Vec::new(), has_more: false });
            };
            let scope_id: i64 = scope_row.get(0);
            let (after_us, after_id) = match &query.after {
                Some(p) => (p.last_modified_us, p.id.clone()),
                None => (i64::MIN, String::new()),
            };
            let actions: Vec<&str> = query.actions.iter().map(|a| a.as_str()).collect();
            let fetch = i64::from(query.limit) + 1;
            let rows = client
                .query(
                    "SELECT id, json, first_seen_at, last_modified_at, last_action, deleted_at FROM records
                     WHERE scope = $1 AND (last_modified_at, id) > ($2, $3) AND last_modified_at >= $4
                       AND (cardinality($5::text[]) = 0 OR last_action = ANY($5))
                     ORDER BY last_modified_at, id LIMIT $6",
                    &[&scope_id, &after_us, &after_id, &query.modified_after_us.unwrap_or(i64::MIN), &actions, &fetch],
                )
                .await?;
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                let id: String = row.get(0);
                let action: String = row.get(4);
                let last_action = LastAction::parse(&action)
                    .ok_or_else(|| StoreError::Corrupt(format!("record {id} has last_action {action}")))?;
                records.push(StoredRecord {
                    json: row.get(1),
                    first_seen_us: row.get(2),
                    last_modified_us: row.get(3),
                    last_action,
                    deleted_us: row.get(5),
                    id,
                });
            }
            let has_more = records.len() > query.limit as usize;
            records.truncate(query.limit as usize);
            Ok(ListPage { records, has_more })
        })
    }

    fn connection_exists(&mut self, connection: &str) -> Result<bool, StoreError> {
        let client = self.connection.lock();
        Ok(wait(client.query_one(
            "SELECT EXISTS (SELECT 1 FROM scopes WHERE connection = $1) OR EXISTS (SELECT 1 FROM checkpoints WHERE connection = $1)",
            &[&connection],
        ))?
        .get(0))
    }
}

pub struct PgCheckpoints {
    connection: Shared,
}

impl PgCheckpoints {
    pub(super) fn new(connection: Shared) -> Self {
        PgCheckpoints { connection }
    }
}

impl CheckpointStore for PgCheckpoints {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
        let client = self.connection.lock();
        let row = wait(
            client
                .query_opt("SELECT value FROM checkpoints WHERE connection = $1 AND sync = $2", &[&connection, &sync]),
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(client.execute(
            "INSERT INTO checkpoints (connection, sync, value, saved_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (connection, sync) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at",
            &[&connection, &sync, &value, &now_us()],
        ))?;
        Ok(())
    }
}
