//! Checkpoints in the same database as the records.

use rusqlite::{params, OptionalExtension};

use super::{now_us, Shared};
use crate::store::{CheckpointStore, StoreError};

/// Reads and replaces checkpoints over one pooled connection (shared with the
/// run's records, see [`Shared`]).
pub struct SqliteCheckpoints {
    connection: Shared,
}

impl SqliteCheckpoints {
    pub(super) fn new(connection: Shared) -> Self {
        SqliteCheckpoints { connection }
    }
}

impl CheckpointStore for SqliteCheckpoints {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .lock()
            .query_row(
                "SELECT value FROM checkpoints WHERE connection = ?1 AND sync = ?2",
                params![connection, sync],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
        self.connection.lock().execute(
            "INSERT INTO checkpoints (connection, sync, value, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connection, sync) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at",
            params![connection, sync, value, now_us()],
        )?;
        Ok(())
    }
}
