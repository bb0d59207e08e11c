//! A run's checkpoints in PostgreSQL, on a pooled connection taken for each;
//! each statement prepared once per connection.
//!
//! A checkpoint is committed without waiting for its WAL to reach the disk
//! (`synchronous_commit` off for that transaction alone; docs/store.md,
//! "PostgreSQL"). PostgreSQL writes and flushes its WAL in order, so the
//! checkpoint is durable once anything committed after it is (the run's next
//! batch of records, the end of the run in its history), and never while the
//! records saved before it are not: a crash of the server can only lose the
//! last checkpoints, and the next run resumes from an earlier one, saving the
//! same records again, unchanged.

use tokio_postgres::types::ToSql;

use super::{wait, WritePool};
use crate::store::sql::checkpoints;
use crate::store::{Checkpoints, StoreError};
use crate::time::now_us;

/// Opens a checkpoint's transaction.
const BEGIN_UNFLUSHED: &str = "BEGIN; SET LOCAL synchronous_commit = off";

pub struct PgCheckpoints {
    connection: WritePool,
}

impl PgCheckpoints {
    pub(super) fn new(connection: WritePool) -> Self {
        PgCheckpoints { connection }
    }
}

impl Checkpoints for PgCheckpoints {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
        let client = self.connection.client()?;
        let row = wait(async {
            let get = client.prepare_cached(checkpoints::GET).await?;
            client.query_opt(&get, &[&connection, &sync]).await
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
        let client = self.connection.client()?;
        let now = now_us();
        let params: [&(dyn ToSql + Sync); 4] = [&connection, &sync, &value, &now];
        wait(async {
            let save = client.prepare_cached(checkpoints::SAVE).await?;
            // One round trip: a COMMIT after a failed statement rolls back.
            let (begun, saved, committed) = tokio::join!(
                client.batch_execute(BEGIN_UNFLUSHED),
                client.execute(&save, &params),
                client.batch_execute("COMMIT"),
            );
            begun.and(saved).and(committed)
        })?;
        Ok(())
    }
}
