//! The schema, as numbered SQL files in `host/migrations/sqlite`, shared with
//! the Node host. `PRAGMA user_version` holds the number of the last file
//! applied; missing ones are applied in one `BEGIN IMMEDIATE` transaction, so
//! two processes opening a new file at once apply each file exactly once.

use rusqlite::{Connection, TransactionBehavior};

/// Every migration, in order: (number, SQL).
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_records.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_listings.sql")),
    (3, include_str!("../../../migrations/sqlite/0003_connections.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_webhooks.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_run_workers.sql")),
    (6, include_str!("../../../migrations/sqlite/0006_connection_provider.sql")),
    (7, include_str!("../../../migrations/sqlite/0007_nango_names.sql")),
    (8, include_str!("../../../migrations/sqlite/0008_notified_index.sql")),
    (9, include_str!("../../../migrations/sqlite/0009_due_order_index.sql")),
];

/// The schema version this host writes.
pub const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the database to [`LATEST`], refusing one written by a newer host.
/// A database already at [`LATEST`] is only read: opening it takes no write
/// lock, so a backup or another writer holding one does not keep a host
/// from starting.
pub fn apply(connection: &mut Connection) -> Result<(), String> {
    let current: u32 =
        connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| e.to_string())?;
    if current == LATEST {
        return Ok(());
    }
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot start the schema migration: {e}"))?;
    let version: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| e.to_string())?;
    if version > LATEST {
        return Err(format!(
            "the database has schema version {version}, newer than this host's {LATEST}; upgrade sync-host"
        ));
    }
    for (number, sql) in MIGRATIONS.iter().filter(|(number, _)| *number > version) {
        tx.execute_batch(sql).map_err(|e| format!("schema migration {number:04} failed: {e}"))?;
    }
    tx.pragma_update(None, "user_version", LATEST).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| format!("cannot commit the schema migration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_0_1_database_upgrades_in_place_and_twice_is_harmless() {
        let mut connection = Connection::open_in_memory().unwrap();
        // What sync-host 0.1 created: version 1's tables, no user_version.
        connection.execute_batch(MIGRATIONS[0].1).unwrap();
        connection.execute_batch("INSERT INTO scopes (connection, model) VALUES ('c', 'Customer')").unwrap();
        apply(&mut connection).unwrap();
        apply(&mut connection).unwrap();
        let (open, last): (Option<i64>, i64) = connection
            .query_row("SELECT open_listing, last_listing FROM scopes", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((open, last), (None, 0));
        let version: u32 = connection.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, LATEST);
    }

    #[test]
    fn a_current_schema_opens_while_another_writer_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.sqlite");
        apply(&mut Connection::open(&path).unwrap()).unwrap();
        let mut holder = Connection::open(&path).unwrap();
        let held = holder.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        let mut opener = Connection::open(&path).unwrap();
        // No busy timeout: a write lock asked for would fail at once.
        opener.busy_timeout(std::time::Duration::ZERO).unwrap();
        apply(&mut opener).expect("a current schema is only read");
        // An outdated one does need the lock, and says so.
        opener.pragma_update(None, "user_version", LATEST - 1).unwrap_err();
        drop(held);
        opener.pragma_update(None, "user_version", LATEST - 1).unwrap();
        let _again = holder.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        let error = apply(&mut opener).unwrap_err();
        assert!(error.contains("cannot start the schema migration"), "{error}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection.pragma_update(None, "user_version", LATEST + 1).unwrap();
        let error = apply(&mut connection).unwrap_err();
        assert!(error.contains("newer"), "{error}");
    }
}
