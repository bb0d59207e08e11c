//! A run's checkpoints in SQLite, on the connection of its record writes.

use rusqlite::{params, OptionalExtension};

use super::{now_us, Shared};
use crate::store::sql::{checkpoints, Dialect};
use crate::store::{Checkpoints, StoreError};

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

impl Checkpoints for SqliteCheckpoints {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .lock()
            .query_row(&Dialect::Sqlite.statement(checkpoints::GET), params![connection, sync], |row| row.get(0))
            .optional()?)
    }

    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
        self.connection
            .lock()
            .execute(&Dialect::Sqlite.statement(checkpoints::SAVE), params![connection, sync, value, now_us()])?;
        Ok(())
    }
}
