//! The PostgreSQL schema, as numbered SQL files in `host/migrations/postgres`.
//! `schema_migrations` records the files applied; a process applies the
//! missing ones under an advisory lock, so several starting at once apply
//! each file exactly once.

use deadpool_postgres::Object;

use super::locks::lock_key;
use crate::store::StoreError;

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_schema.sql")),
    (2, include_str!("../../../migrations/postgres/0002_connection_provider.sql")),
    (3, include_str!("../../../migrations/postgres/0003_nango_names.sql")),
    (4, include_str!("../../../migrations/postgres/0004_records_scope_trigger.sql")),
    (5, include_str!("../../../migrations/postgres/0005_notified_index.sql")),
    (6, include_str!("../../../migrations/postgres/0006_due_order_index.sql")),
];

/// The schema version this host writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub async fn apply(client: &mut Object) -> Result<(), StoreError> {
    let key = lock_key("migrations", "");
    client.query_one("SELECT pg_advisory_lock($1)::text", &[&key]).await?;
    let result = apply_locked(client).await;
    client.query_one("SELECT pg_advisory_unlock($1)", &[&key]).await?;
    result
}

async fn apply_locked(client: &mut Object) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .await?;
    let version: i32 = client.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await?.get(0);
    if version > LATEST {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this host's {LATEST}; upgrade sync-host"
        )));
    }
    for (number, sql) in MIGRATIONS.iter().filter(|(number, _)| *number > version) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Backend(format!("schema migration {number:04} failed: {}", super::driver_error_text(&e)))
        })?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[number]).await?;
        tx.commit().await?;
    }
    Ok(())
}
