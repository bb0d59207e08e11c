//! Run and token-refresh locks as PostgreSQL session advisory locks: a lock
//! dies with the worker's connection, so a worker that dies (even by
//! `kill -9`) frees it for another worker, which resumes from the checkpoint.

use deadpool_postgres::{Object, Pool};
use sha2::{Digest, Sha256};

use super::wait;
use crate::store::{Lease, Locks, StoreError};

pub(super) struct AdvisoryLocks {
    pub(super) pool: Pool,
}

/// The advisory-lock key of `what` about `connection`.
pub(super) fn lock_key(what: &str, connection: &str) -> i64 {
    let digest = Sha256::digest(format!("sync-host:{what}:{connection}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A session advisory lock, held on its own connection until dropped.
struct AdvisoryLease {
    client: Option<Object>,
    key: i64,
}

impl Lease for AdvisoryLease {}

impl Drop for AdvisoryLease {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let key = self.key;
        let unlocked = wait(async {
            client.query_one("SELECT pg_advisory_unlock($1)", &[&key]).await.map(|r| r.get::<_, bool>(0))
        });
        if !matches!(unlocked, Ok(true)) {
            // A connection that may still hold the lock never goes back to the pool.
            let _ = Object::take(client);
        }
    }
}

impl Locks for AdvisoryLocks {
    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let client = wait(self.pool.get())?;
        let key = lock_key("run", connection);
        let locked: bool = wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))?.get(0);
        Ok(locked.then(|| Box::new(AdvisoryLease { client: Some(client), key }) as Box<dyn Lease>))
    }

    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError> {
        let client = wait(self.pool.get())?;
        let key = lock_key("refresh", connection);
        wait(client.query_one("SELECT pg_advisory_lock($1)::text", &[&key]))?;
        Ok(Box::new(AdvisoryLease { client: Some(client), key }))
    }
}
