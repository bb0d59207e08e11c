//! A run's checkpoints in PostgreSQL, on the connection of its record writes;
//! each statement prepared once per connection.

use super::{wait, Shared};
use crate::store::sql::checkpoints;
use crate::store::{Checkpoints, StoreError};
use crate::time::now_us;

pub struct PgCheckpoints {
    connection: Shared,
}

impl PgCheckpoints {
    pub(super) fn new(connection: Shared) -> Self {
        PgCheckpoints { connection }
    }
}

impl Checkpoints for PgCheckpoints {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError> {
        let client = self.connection.lock();
        let row = wait(async {
            let get = client.prepare_cached(checkpoints::GET).await?;
            client.query_opt(&get, &[&connection, &sync]).await
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError> {
        let client = self.connection.lock();
        wait(async {
            let save = client.prepare_cached(checkpoints::SAVE).await?;
            client.execute(&save, &[&connection, &sync, &value, &now_us()]).await
        })?;
        Ok(())
    }
}
