//! SQLite backend of the records store and of the checkpoint store.
//!
//! Records of a (connection, model) pair share an integer `scope`, so the
//! ordering index is `(scope, last_modified_at, id)` over integers and short
//! text: the shape of that index is what bounds write throughput.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{BatchOutcome, LastAction, ListPage, ListQuery, RecordStore, Scope, StoreError, StoredRecord, ValidRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY,
    connection TEXT NOT NULL,
    model TEXT NOT NULL,
    -- last timestamp handed out, so timestamps strictly increase per scope
    clock_us INTEGER NOT NULL DEFAULT 0,
    UNIQUE (connection, model)
);
CREATE TABLE IF NOT EXISTS records (
    scope INTEGER NOT NULL REFERENCES scopes(id),
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    hash BLOB NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_modified_at INTEGER NOT NULL,
    last_action TEXT NOT NULL CHECK (last_action IN ('ADDED', 'UPDATED', 'DELETED')),
    deleted_at INTEGER,
    PRIMARY KEY (scope, id)
);
CREATE INDEX IF NOT EXISTS records_by_modification ON records (scope, last_modified_at, id);
CREATE TABLE IF NOT EXISTS checkpoints (
    connection TEXT NOT NULL,
    sync TEXT NOT NULL,
    value TEXT NOT NULL,
    saved_at INTEGER NOT NULL,
    PRIMARY KEY (connection, sync)
);
";

/// Opens (creating if needed) a database file with the store's schema.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    // WAL lets `serve` read while `run` writes; NORMAL keeps commit order on a crash.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The records store over one SQLite connection.
pub struct SqliteStore {
    connection: Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteStore { connection: open(path)? })
    }

    pub fn from_connection(connection: Connection) -> Self {
        SqliteStore { connection }
    }
}

/// Hands out strictly increasing timestamps within one transaction.
struct Clock {
    last_us: i64,
}

impl Clock {
    fn tick(&mut self) -> i64 {
        self.last_us = now_us().max(self.last_us + 1);
        self.last_us
    }
}

fn scope_id(tx: &rusqlite::Transaction<'_>, scope: &Scope) -> Result<(i64, Clock), StoreError> {
    tx.execute(
        "INSERT INTO scopes (connection, model) VALUES (?1, ?2) ON CONFLICT (connection, model) DO NOTHING",
        params![scope.connection, scope.model],
    )?;
    let (id, clock_us) = tx.query_row(
        "SELECT id, clock_us FROM scopes WHERE connection = ?1 AND model = ?2",
        params![scope.connection, scope.model],
        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
    )?;
    Ok((id, Clock { last_us: clock_us }))
}

fn save_clock(tx: &rusqlite::Transaction<'_>, scope: i64, clock: &Clock) -> Result<(), StoreError> {
    tx.execute("UPDATE scopes SET clock_us = ?1 WHERE id = ?2", params![clock.last_us, scope])?;
    Ok(())
}

impl RecordStore for SqliteStore {
    fn save(&mut self, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError> {
        let tx = self.connection.transaction()?;
        let (scope_id, mut clock) = scope_id(&tx, scope)?;
        let mut outcome = BatchOutcome::default();
        {
            let mut current = tx.prepare_cached("SELECT hash, deleted_at IS NOT NULL FROM records WHERE scope = ?1 AND id = ?2")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (scope, id, json, hash, first_seen_at, last_modified_at, last_action, deleted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'ADDED', NULL)",
            )?;
            let mut update = tx.prepare_cached(
                "UPDATE records SET json = ?3, hash = ?4, last_modified_at = ?5, last_action = 'UPDATED', deleted_at = NULL
                 WHERE scope = ?1 AND id = ?2",
            )?;
            for record in records {
                let existing: Option<(Vec<u8>, bool)> = current
                    .query_row(params![scope_id, record.id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                match existing {
                    None => {
                        insert.execute(params![scope_id, record.id, record.json, &record.hash[..], clock.tick()])?;
                        outcome.added += 1;
                    }
                    Some((hash, deleted)) if deleted || hash != record.hash => {
                        update.execute(params![scope_id, record.id, record.json, &record.hash[..], clock.tick()])?;
                        outcome.updated += 1;
                    }
                    Some(_) => outcome.unchanged += 1,
                }
            }
        }
        save_clock(&tx, scope_id, &clock)?;
        tx.commit()?;
        Ok(outcome)
    }

    fn delete(&mut self, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError> {
        let tx = self.connection.transaction()?;
        let (scope_id, mut clock) = scope_id(&tx, scope)?;
        let mut outcome = BatchOutcome::default();
        {
            let mut delete = tx.prepare_cached(
                "UPDATE records SET deleted_at = ?3, last_modified_at = ?3, last_action = 'DELETED'
                 WHERE scope = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?;
            for id in ids {
                // The timestamp is only used when a row changes; a skipped tick is harmless.
                let changed = delete.execute(params![scope_id, id, clock.tick()])?;
                outcome.deleted += changed as u32;
            }
        }
        save_clock(&tx, scope_id, &clock)?;
        tx.commit()?;
        Ok(outcome)
    }

    fn list(&mut self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError> {
        let scope_id: Option<i64> = self
            .connection
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
        let mut statement = self.connection.prepare_cached(&sql)?;
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
        Ok(self.connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM scopes WHERE connection = ?1)
                 OR EXISTS (SELECT 1 FROM checkpoints WHERE connection = ?1)",
            params![connection],
            |row| row.get(0),
        )?)
    }
}

/// Reads and replaces checkpoints in the same database.
pub struct SqliteCheckpoints {
    connection: Connection,
}

impl SqliteCheckpoints {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteCheckpoints { connection: open(path)? })
    }
}

impl crate::checkpoint::CheckpointStore for SqliteCheckpoints {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT value FROM checkpoints WHERE connection = ?1 AND sync = ?2",
                params![connection, sync],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO checkpoints (connection, sync, value, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connection, sync) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at",
            params![connection, sync, value, now_us()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::validate_batch;

    fn store() -> SqliteStore {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        SqliteStore::from_connection(connection)
    }

    fn scope() -> Scope {
        Scope { connection: "c".into(), model: "Customer".into() }
    }

    fn save(store: &mut SqliteStore, texts: &[&str]) -> BatchOutcome {
        let records = validate_batch(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap();
        store.save(&scope(), &records).unwrap()
    }

    fn all(store: &mut SqliteStore) -> Vec<StoredRecord> {
        store.list(&scope(), &ListQuery { limit: 1000, ..Default::default() }).unwrap().records
    }

    #[test]
    fn change_tracking_follows_the_records_cache_semantics() {
        let mut store = store();
        let o = save(&mut store, &[r#"{"id":"1","n":1}"#, r#"{"id":"2","n":2}"#]);
        assert_eq!((o.added, o.updated, o.unchanged), (2, 0, 0));
        let first = all(&mut store);
        assert!(first.iter().all(|r| r.last_action == LastAction::Added && r.first_seen_us == r.last_modified_us));

        let o = save(&mut store, &[r#"{"n":1,"id":"1"}"#, r#"{"id":"2","n":3}"#]);
        assert_eq!((o.added, o.updated, o.unchanged), (0, 1, 1));
        let after = all(&mut store);
        let one = after.iter().find(|r| r.id == "1").unwrap();
        assert_eq!(one.last_modified_us, first[0].last_modified_us, "an identical save changes nothing");
        let two = after.iter().find(|r| r.id == "2").unwrap();
        assert_eq!(two.last_action, LastAction::Updated);
        assert!(two.last_modified_us > first[1].last_modified_us);

        let o = store.delete(&scope(), &["2".into(), "404".into()]).unwrap();
        assert_eq!(o.deleted, 1);
        let o = store.delete(&scope(), &["2".into()]).unwrap();
        assert_eq!(o.deleted, 0, "deleting a deleted id does nothing");
        let two = all(&mut store).into_iter().find(|r| r.id == "2").unwrap();
        assert_eq!(two.last_action, LastAction::Deleted);
        assert_eq!(two.deleted_us, Some(two.last_modified_us));
        assert!(two.json.contains("\"n\":3"), "the payload is kept");

        let o = save(&mut store, &[r#"{"id":"2","n":3}"#]);
        assert_eq!(o.updated, 1, "a deleted id comes back");
        let two = all(&mut store).into_iter().find(|r| r.id == "2").unwrap();
        assert_eq!((two.last_action, two.deleted_us), (LastAction::Updated, None));
    }

    #[test]
    fn timestamps_strictly_increase_so_the_order_is_total() {
        let mut store = store();
        let texts: Vec<String> = (0..500).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
        store.save(&scope(), &validate_batch(&texts).unwrap()).unwrap();
        let records = all(&mut store);
        assert!(records.windows(2).all(|w| w[0].last_modified_us < w[1].last_modified_us));
    }

    #[test]
    fn keyset_pages_visit_every_record_once() {
        let mut store = store();
        let texts: Vec<String> = (0..57).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
        store.save(&scope(), &validate_batch(&texts).unwrap()).unwrap();
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = store.list(&scope(), &ListQuery { after: after.clone(), limit: 10, ..Default::default() }).unwrap();
            seen.extend(page.records.iter().map(|r| r.id.clone()));
            let last = page.records.last().unwrap();
            after = Some(crate::records::Position { last_modified_us: last.last_modified_us, id: last.id.clone() });
            if !page.has_more {
                break;
            }
        }
        assert_eq!(seen.len(), 57);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 57);
    }
}
