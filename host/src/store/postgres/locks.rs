//! Run and token-refresh locks as PostgreSQL session advisory locks: a lock
//! dies with the worker's connection, so a worker that dies (even by
//! `kill -9`) frees it for another worker, which resumes from the checkpoint.
//!
//! The run locks of one process all live on one session of their own,
//! opened beside the pool so that it never waits for one (docs/store.md,
//! "Connections"): a run waits on its provider most of its time, and a
//! connection per run held for that wait made the server's
//! `max_connections` the limit of how many runs the workers of one database
//! could have in flight. Taking and releasing a run
//! lock never waits on another holder (`pg_try_advisory_lock`), so the runs
//! sharing the session never queue behind each other there. PostgreSQL
//! counts a session's locks of one key, so a second take by the same session
//! would succeed: the keys this process holds are kept beside the session,
//! and a run of a connection already running here is refused before asking.
//!
//! A refresh lock is waited for (`pg_advisory_lock`), which would hold up
//! every other request on a shared session, so each keeps a pooled
//! connection of its own while it is held: a token refresh is rare and short.

use deadpool_postgres::{Object, Pool};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls};

use super::wait;
use crate::store::{Lease, Locks, StoreError};

pub(super) struct AdvisoryLocks {
    runs: Arc<RunLocks>,
    pool: Pool,
}

impl AdvisoryLocks {
    /// Run locks on a session `config` opens, refresh locks on `pool`.
    pub(super) fn new(pool: Pool, config: Config) -> Self {
        let runs = RunLocks { config, session: Mutex::default() };
        AdvisoryLocks { runs: Arc::new(runs), pool }
    }
}

/// The advisory-lock key of `what` about `connection`.
pub(super) fn lock_key(what: &str, connection: &str) -> i64 {
    let digest = Sha256::digest(format!("sync-host:{what}:{connection}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// This process's run locks: the session holding them, and their keys.
struct RunLocks {
    config: Config,
    session: Mutex<Session>,
}

#[derive(Default)]
struct Session {
    /// The connection the locks are held on; `None` until the first lock,
    /// and after it was found closed.
    client: Option<Arc<Client>>,
    /// Counts the sessions: a lease of an earlier one holds nothing any more
    /// (the server freed its locks when that session ended).
    generation: u64,
    /// The keys held by this process's leases, of any generation.
    held: HashSet<i64>,
}

impl RunLocks {
    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open session, opened if there is none, and its generation.
    fn client(&self, session: &mut Session) -> Result<(Arc<Client>, u64), StoreError> {
        if let Some(client) = session.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok((client.clone(), session.generation));
        }
        if session.client.take().is_some() {
            session.generation += 1;
            tracing::warn!(
                target: "store",
                "the session holding this process's run locks closed; the runs in flight no longer hold theirs"
            );
        }
        let client = wait(async {
            let (client, connection) = self.config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(Arc::new(client))
        })?;
        session.client = Some(client.clone());
        Ok((client, session.generation))
    }

    /// Forgets the session of `generation` if it is closed (a new one opens
    /// when next asked).
    fn closed(&self, generation: u64) {
        let mut session = self.session();
        if session.generation == generation && session.client.as_ref().is_some_and(|c| c.is_closed()) {
            session.client = None;
            session.generation += 1;
        }
    }

    fn try_lock(self: &Arc<Self>, key: i64) -> Result<Option<RunLease>, StoreError> {
        let (client, generation) = {
            let mut session = self.session();
            if session.held.contains(&key) {
                return Ok(None);
            }
            let opened = self.client(&mut session)?;
            // Taken here before asking, so a second run of it in this
            // process is refused meanwhile.
            session.held.insert(key);
            opened
        };
        let locked = wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]));
        match locked.map(|row| row.get::<_, bool>(0)) {
            Ok(true) => Ok(Some(RunLease { locks: self.clone(), key, generation })),
            Ok(false) => {
                self.session().held.remove(&key);
                Ok(None)
            }
            Err(error) => {
                self.session().held.remove(&key);
                self.closed(generation);
                Err(error.into())
            }
        }
    }
}

/// A run lock on the process's session, released when dropped.
struct RunLease {
    locks: Arc<RunLocks>,
    key: i64,
    generation: u64,
}

impl Lease for RunLease {}

impl Drop for RunLease {
    fn drop(&mut self) {
        let client = {
            let mut session = self.locks.session();
            session.held.remove(&self.key);
            // A lease of a session that ended holds nothing to release.
            session.client.clone().filter(|_| session.generation == self.generation)
        };
        let Some(client) = client else { return };
        let key = self.key;
        match wait(client.query_one("SELECT pg_advisory_unlock($1)", &[&key])).map(|r| r.get::<_, bool>(0)) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(target: "store", "a run lock was no longer held when its run ended"),
            Err(error) => {
                // Closed, the session's locks are gone with it; open, the
                // lock may stay held until the process ends, and another
                // process would find the connection busy until then.
                tracing::warn!(target: "store", "cannot release a run lock: {}", StoreError::from(error));
                self.locks.closed(self.generation);
            }
        }
    }
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
        let lease = self.runs.try_lock(lock_key("run", connection))?;
        Ok(lease.map(|lease| Box::new(lease) as Box<dyn Lease>))
    }

    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError> {
        let client = wait(self.pool.get())?;
        let key = lock_key("refresh", connection);
        wait(client.query_one("SELECT pg_advisory_lock($1)::text", &[&key]))?;
        Ok(Box::new(AdvisoryLease { client: Some(client), key }))
    }
}
