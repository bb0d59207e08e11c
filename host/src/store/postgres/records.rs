//! What a run writes of the records in PostgreSQL (docs/store.md, "PostgreSQL").
//!
//! A write first creates its scope's row if needed and locks it (`SELECT …
//! FOR UPDATE`), then reads the clock and hands out timestamps under that
//! lock, so the transactions of one scope commit in timestamp order: a
//! reader paging by cursor never misses a record committed later with a
//! smaller timestamp.
//!
//! A batch is one statement over arrays (`unnest`), and the transaction
//! around it one round trip: `BEGIN`, the scope's row created and locked,
//! the batch's statement and `COMMIT` are sent together (tokio-postgres
//! pipelines requests issued concurrently on one connection; after a
//! failure, `COMMIT` ends the aborted transaction as a rollback). The
//! statement reads the scope's row itself (its clock and open listing): it
//! runs after the lock is taken, so it sees every write committed before.
//! Statements are prepared once per pooled connection.

use deadpool_postgres::Object;
use std::collections::HashSet;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{wait, WritePool};
use crate::store::sql::records::{ABANDON_LISTING, BEGIN_LISTING, CLOSE_LISTING, CREATE_SCOPE, SCOPE, UNSEEN};
use crate::store::{BatchOutcome, RecordWrites, Scope, StoreError, ValidRecord};
use crate::time::now_us;

/// Parameters: connection, model. Locks the scope's row (one row: its id, clock, open listing).
const LOCK_SCOPE: &str =
    "SELECT id, clock_us, open_listing FROM scopes WHERE connection = $1 AND model = $2 FOR UPDATE";

/// Plans a write transaction's statements as index lookups (the batch's ids
/// in the primary key, the scope's row by its keys) whatever the statistics
/// say: while a large first sync loads a new table it has none (autovacuum
/// analyzes it a minute later), and a plan that hashes or scans the whole
/// scope would cost every batch the size of the scope.
macro_rules! lookups {
    () => {
        "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
    };
}
const LOOKUPS: &str = lookups!();
/// Opens a write transaction, planned as [`LOOKUPS`] says.
const BEGIN: &str = concat!("BEGIN; ", lookups!());

/// Parameters: connection, model, now (µs), ids, JSON texts, hashes. One
/// row: how many records were added, and how many updated; the rest of the
/// batch was unchanged.
///
/// The batch is upserted on the primary key, so each record costs one
/// lookup in that index whatever the plan. A record is changed when new,
/// deleted or of another hash; each changed one takes the timestamp
/// `first + its position in the batch - 1`, with `first = max(now, clock +
/// 1)`, so timestamps strictly increase in batch order (the positions of
/// unchanged records are skipped). An unchanged record is only marked as
/// seen by the open listing, if there is one; otherwise it is not written.
/// The clock becomes the last timestamp handed out.
const SAVE: &str = "
WITH s AS (
    SELECT id, greatest($3, clock_us + 1) AS first, open_listing AS listing
    FROM scopes WHERE connection = $1 AND model = $2
), w AS (
    INSERT INTO records AS r (scope, id, json, hash, first_seen_at, last_modified_at, last_action, deleted_at, listing)
    SELECT s.id, b.id, b.json, b.hash, s.first + b.n - 1, s.first + b.n - 1, 'ADDED', NULL, s.listing
    FROM s, unnest($4::text[], $5::text[], $6::bytea[]) WITH ORDINALITY AS b(id, json, hash, n)
    ON CONFLICT (scope, id) DO UPDATE SET
        json = CASE WHEN r.hash <> excluded.hash OR r.deleted_at IS NOT NULL THEN excluded.json ELSE r.json END,
        hash = excluded.hash,
        last_modified_at = CASE WHEN r.hash <> excluded.hash OR r.deleted_at IS NOT NULL
                                THEN excluded.last_modified_at ELSE r.last_modified_at END,
        last_action = CASE WHEN r.hash <> excluded.hash OR r.deleted_at IS NOT NULL
                           THEN 'UPDATED' ELSE r.last_action END,
        deleted_at = NULL,
        listing = coalesce(excluded.listing, r.listing)
    WHERE r.hash <> excluded.hash OR r.deleted_at IS NOT NULL
       OR (excluded.listing IS NOT NULL AND r.listing IS DISTINCT FROM excluded.listing)
    RETURNING r.first_seen_at, r.last_modified_at
), changed AS (
    SELECT w.first_seen_at >= s.first AS added, w.last_modified_at AS at FROM w, s WHERE w.last_modified_at >= s.first
), clock AS (
    UPDATE scopes SET clock_us = c.last FROM (SELECT max(at) AS last FROM changed) c
    WHERE scopes.id = (SELECT id FROM s) AND c.last IS NOT NULL
)
SELECT count(*) FILTER (WHERE added), count(*) FILTER (WHERE NOT added) FROM changed";

/// [`SAVE`] for a batch of new records only, as a plain `INSERT`: a
/// quarter cheaper than the upsert, which looks each record up before
/// inserting it. A batch that holds a stored id fails on the primary key
/// (and is saved again with [`SAVE`]). Same parameters and row.
const INSERT_NEW: &str = "
WITH s AS (
    SELECT id, greatest($3, clock_us + 1) AS first, open_listing AS listing
    FROM scopes WHERE connection = $1 AND model = $2
), w AS (
    INSERT INTO records (scope, id, json, hash, first_seen_at, last_modified_at, last_action, deleted_at, listing)
    SELECT s.id, b.id, b.json, b.hash, s.first + b.n - 1, s.first + b.n - 1, 'ADDED', NULL, s.listing
    FROM s, unnest($4::text[], $5::text[], $6::bytea[]) WITH ORDINALITY AS b(id, json, hash, n)
    RETURNING last_modified_at AS at
), clock AS (
    UPDATE scopes SET clock_us = c.last FROM (SELECT max(at) AS last FROM w) c
    WHERE scopes.id = (SELECT id FROM s) AND c.last IS NOT NULL
)
SELECT count(*), 0::bigint FROM w";

/// Parameters: connection, model, now (µs), ids. One row: how many were
/// deleted. Soft-deletes the live records of `ids`, each with the timestamp
/// `first + its position - 1` as [`SAVE`] hands them out; unknown and
/// deleted ids change nothing. Runs after [`LOOKUPS`].
const DELETE: &str = "
WITH s AS (
    SELECT id, greatest($3, clock_us + 1) AS first FROM scopes WHERE connection = $1 AND model = $2
), d AS (
    UPDATE records r SET deleted_at = s.first + b.n - 1, last_modified_at = s.first + b.n - 1, last_action = 'DELETED'
    FROM s, unnest($4::text[]) WITH ORDINALITY AS b(id, n)
    WHERE r.scope = s.id AND r.id = b.id AND r.deleted_at IS NULL
    RETURNING r.last_modified_at AS at
), clock AS (
    UPDATE scopes SET clock_us = c.last FROM (SELECT max(at) AS last FROM d) c
    WHERE scopes.id = (SELECT id FROM s) AND c.last IS NOT NULL
)
SELECT count(*) FROM d";

/// Parameters: scope id, ids, listing. Marks the live records of `ids` as
/// seen by the listing. Runs after [`LOOKUPS`].
const KEEP: &str = "UPDATE records r SET listing = $3 FROM unnest($2::text[]) AS k(id)
     WHERE r.scope = $1 AND r.id = k.id AND r.deleted_at IS NULL";

pub struct PgRecords {
    connection: WritePool,
    /// The scopes a batch of this handle found records in: their batches go
    /// straight to [`SAVE`]. Any other scope's batch is tried as
    /// [`INSERT_NEW`] first (the batches of a first sync all succeed).
    stored: HashSet<Scope>,
}

impl PgRecords {
    pub(super) fn new(connection: WritePool) -> Self {
        PgRecords { connection, stored: HashSet::new() }
    }
}

/// What a write transaction did.
enum Written {
    Committed(Vec<Row>),
    /// Rolled back: the statement met a record already stored.
    Duplicate,
}

/// Runs `statement` in a transaction of its own after creating and locking
/// the scope's row, all in one round trip; returns its rows.
async fn locked_write(
    client: &Object,
    scope: &Scope,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    match try_locked_write(client, scope, statement, params).await? {
        Written::Committed(rows) => Ok(rows),
        Written::Duplicate => Err(StoreError::Backend(format!("a record of `{}` is stored twice", scope.model))),
    }
}

/// [`locked_write`], answering [`Written::Duplicate`] when the statement
/// fails on the records' primary key.
async fn try_locked_write(
    client: &Object,
    scope: &Scope,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Written, StoreError> {
    let create = client.prepare_cached(CREATE_SCOPE).await?;
    let lock = client.prepare_cached(LOCK_SCOPE).await?;
    let statement = client.prepare_cached(statement).await?;
    let key: [&(dyn ToSql + Sync); 2] = [&scope.connection, &scope.model];
    // COMMIT goes with them: after a failure it ends the aborted
    // transaction as a ROLLBACK would.
    let (begun, created, locked, rows, committed) = tokio::join!(
        client.batch_execute(BEGIN),
        client.execute(&create, &key),
        client.execute(&lock, &key),
        client.query(&statement, params),
        client.batch_execute("COMMIT"),
    );
    let duplicate = matches!(&rows, Err(e) if e.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION && db.constraint() == Some("records_pkey")
    }));
    // The first failure is the cause; those after it only say that the
    // transaction was aborted.
    let result = (move || {
        begun?;
        created?;
        if locked? != 1 {
            return Err(StoreError::Backend(format!("the scope `{}` of `{}` vanished", scope.model, scope.connection)));
        }
        let rows = rows?;
        committed?;
        Ok(rows)
    })();
    match result {
        Ok(rows) => Ok(Written::Committed(rows)),
        Err(_) if duplicate => Ok(Written::Duplicate),
        Err(error) => Err(error),
    }
}

/// Creates the scope's row if needed and locks it; returns its id.
async fn lock_scope(tx: &deadpool_postgres::Transaction<'_>, scope: &Scope) -> Result<i64, StoreError> {
    let create = tx.prepare_cached(CREATE_SCOPE).await?;
    let lock = tx.prepare_cached(LOCK_SCOPE).await?;
    tx.execute(&create, &[&scope.connection, &scope.model]).await?;
    Ok(tx.query_one(&lock, &[&scope.connection, &scope.model]).await?.get(0))
}

/// A count the statements return as `bigint`.
fn count(row: &Row, column: usize) -> u32 {
    row.get::<_, i64>(column) as u32
}

/// The scope's row if it exists and has `listing` open, locked.
async fn lock_open_scope(
    tx: &deadpool_postgres::Transaction<'_>,
    scope: &Scope,
    listing: u64,
) -> Result<i64, StoreError> {
    let lock = tx.prepare_cached(LOCK_SCOPE).await?;
    let row = tx.query_opt(&lock, &[&scope.connection, &scope.model]).await?;
    let row = row.map(|r| (r.get::<_, i64>(0), r.get::<_, Option<i64>>(2)));
    match row {
        Some((id, open)) if open == Some(listing as i64) => Ok(id),
        other => Err(StoreError::NoListing {
            model: scope.model.clone(),
            listing,
            open: other.and_then(|(_, open)| open).map(|l| l as u64),
        }),
    }
}

impl RecordWrites for PgRecords {
    fn save(&mut self, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError> {
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let json: Vec<&str> = records.iter().map(|r| r.json.as_str()).collect();
        let hashes: Vec<&[u8]> = records.iter().map(|r| &r.hash[..]).collect();
        let client = self.connection.client()?;
        let now = now_us();
        let params: [&(dyn ToSql + Sync); 6] = [&scope.connection, &scope.model, &now, &ids, &json, &hashes];
        let rows = wait(async {
            if !self.stored.contains(scope) {
                match try_locked_write(&client, scope, INSERT_NEW, &params).await? {
                    Written::Committed(rows) => return Ok(rows),
                    Written::Duplicate => {
                        self.stored.insert(scope.clone());
                    }
                }
            }
            locked_write(&client, scope, SAVE, &params).await
        })?;
        let (added, updated) = (count(&rows[0], 0), count(&rows[0], 1));
        Ok(BatchOutcome {
            added,
            updated,
            unchanged: (records.len() as u32).saturating_sub(added + updated),
            deleted: 0,
        })
    }

    fn delete(&mut self, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError> {
        let client = self.connection.client()?;
        let now = now_us();
        let params: [&(dyn ToSql + Sync); 4] = [&scope.connection, &scope.model, &now, &ids];
        let rows = wait(locked_write(&client, scope, DELETE, &params))?;
        Ok(BatchOutcome { deleted: count(&rows[0], 0), ..Default::default() })
    }

    fn begin_listing(&mut self, scope: &Scope) -> Result<u64, StoreError> {
        let mut client = self.connection.client()?;
        wait(async {
            let tx = client.transaction().await?;
            tx.batch_execute(LOOKUPS).await?;
            let id = lock_scope(&tx, scope).await?;
            let begin = tx.prepare_cached(BEGIN_LISTING).await?;
            let listing: i64 = tx.query_one(&begin, &[&id]).await?.get(0);
            tx.commit().await?;
            Ok(listing as u64)
        })
    }

    fn current_listing(&mut self, scope: &Scope) -> Result<Option<u64>, StoreError> {
        let client = self.connection.client()?;
        let row = wait(async {
            let statement = client.prepare_cached(SCOPE).await?;
            client.query_opt(&statement, &[&scope.connection, &scope.model]).await
        })?;
        Ok(row.and_then(|r| r.get::<_, Option<i64>>(2)).map(|l| l as u64))
    }

    fn keep(&mut self, scope: &Scope, listing: u64, ids: &[String]) -> Result<(), StoreError> {
        let mut client = self.connection.client()?;
        wait(async {
            let tx = client.transaction().await?;
            tx.batch_execute(LOOKUPS).await?;
            let id = lock_open_scope(&tx, scope, listing).await?;
            let keep = tx.prepare_cached(KEEP).await?;
            tx.execute(&keep, &[&id, &ids, &(listing as i64)]).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn end_listing(&mut self, scope: &Scope, listing: u64) -> Result<BatchOutcome, StoreError> {
        let mut client = self.connection.client()?;
        wait(async {
            let tx = client.transaction().await?;
            tx.batch_execute(LOOKUPS).await?;
            let id = lock_open_scope(&tx, scope, listing).await?;
            let unseen = tx.prepare_cached(UNSEEN).await?;
            let unseen: Vec<String> =
                tx.query(&unseen, &[&id, &(listing as i64)]).await?.into_iter().map(|r| r.get(0)).collect();
            // In id order, each with its own timestamp.
            let delete = tx.prepare_cached(DELETE).await?;
            let deleted = tx.query_one(&delete, &[&scope.connection, &scope.model, &now_us(), &unseen]).await?;
            let close = tx.prepare_cached(CLOSE_LISTING).await?;
            tx.execute(&close, &[&id]).await?;
            tx.commit().await?;
            Ok(BatchOutcome { deleted: count(&deleted, 0), ..Default::default() })
        })
    }

    fn abandon_listing(&mut self, scope: &Scope, listing: u64) -> Result<(), StoreError> {
        let client = self.connection.client()?;
        wait(async {
            let abandon = client.prepare_cached(ABANDON_LISTING).await?;
            client.execute(&abandon, &[&scope.connection, &scope.model, &(listing as i64)]).await
        })?;
        Ok(())
    }
}
