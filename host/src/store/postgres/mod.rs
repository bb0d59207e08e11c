//! The PostgreSQL backend (`--db postgres://…`), for several `sync-host`
//! processes sharing one database (docs/store.md, "PostgreSQL"). The same
//! traits and meaning as SQLite, proven by the same test suite.
//!
//! The store traits are blocking (a component's host calls are), so the
//! driver (tokio-postgres, pooled by deadpool) runs on a runtime of its own,
//! on a thread of its own, and each call waits for its future.
//!
//! Locks are PostgreSQL advisory locks held by a session: a run's lock dies
//! with the worker's connection, so a worker that dies (even by `kill -9`)
//! frees its connections for another worker, which resumes from the checkpoint.

mod connections;
mod migrations;
mod records;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use super::{
    CheckpointStore, ConnectionStore, Database, Lease, RecordStore, RunHistory, RunStores, StoreError, WebhookStore,
};

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Backend(driver_error_text(&error))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Backend(format!("no database connection: {}", pool_error_text(&error)))
    }
}

/// The driver's error with its cause: its own text is generic (`db error`,
/// `error connecting to server`), and what a user can act on — the server's
/// message (`database "x" does not exist`) or the socket's (`Connection
/// refused`) — is in what it wraps.
fn driver_error_text(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

fn pool_error_text(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(driver) => driver_error_text(driver),
        other => other.to_string(),
    }
}

/// The runtime the driver runs on, on a thread that lives as long as the
/// process: dropping it inside another runtime would panic.
fn driver() -> Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("postgres".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .thread_name("postgres-io")
                        .enable_all()
                        .build()
                        .expect("a runtime for the PostgreSQL driver");
                    let _ = tx.send(runtime.handle().clone());
                    runtime.block_on(std::future::pending::<()>());
                })
                .expect("can spawn the PostgreSQL driver's thread");
            rx.recv().expect("the driver's runtime starts")
        })
        .clone()
}

/// Waits for `future` on the driver's runtime (from a blocking thread).
fn wait<F: Future>(future: F) -> F::Output {
    driver().block_on(future)
}

/// One pooled connection used by the stores of one handle or one run.
#[derive(Clone)]
struct Shared(Arc<Mutex<Object>>);

impl Shared {
    fn new(object: Object) -> Self {
        Shared(Arc::new(Mutex::new(object)))
    }

    fn lock(&self) -> MutexGuard<'_, Object> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A PostgreSQL database and its pool.
pub struct PostgresDatabase {
    pool: Pool,
    /// The URL without its password, for messages.
    shown: String,
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl PostgresDatabase {
    /// Connects, and applies the schema's migrations (several processes
    /// starting at once apply each one once).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = without_password(url);
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Backend(format!("{shown} is not a PostgreSQL URL: {e}")))?;
        Self::open_config(config, shown)
    }

    fn open_config(config: tokio_postgres::Config, shown: String) -> Result<Self, StoreError> {
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(32)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot set up the pool for {shown}: {e}")))?;
        let database = PostgresDatabase { pool, shown };
        wait(async {
            let mut client = database.pool.get().await.map_err(|e| {
                StoreError::Backend(format!("cannot connect to {}: {}", database.shown, pool_error_text(&e)))
            })?;
            migrations::apply(&mut client).await
        })?;
        Ok(database)
    }

    fn connection(&self) -> Result<Object, StoreError> {
        Ok(wait(self.pool.get())?)
    }

    fn shared(&self) -> Result<Shared, StoreError> {
        Ok(Shared::new(self.connection()?))
    }
}

/// The advisory-lock key of `what` about `connection`.
fn lock_key(what: &str, connection: &str) -> i64 {
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

impl Database for PostgresDatabase {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn records(&self) -> Result<Box<dyn RecordStore>, StoreError> {
        Ok(Box::new(records::PgRecords::new(self.shared()?)))
    }

    fn checkpoints(&self) -> Result<Box<dyn CheckpointStore>, StoreError> {
        Ok(Box::new(records::PgCheckpoints::new(self.shared()?)))
    }

    fn run_stores(&self) -> Result<RunStores, StoreError> {
        let shared = self.shared()?;
        Ok(RunStores {
            records: Box::new(records::PgRecords::new(shared.clone())),
            checkpoints: Box::new(records::PgCheckpoints::new(shared)),
        })
    }

    fn connections(&self) -> Result<Box<dyn ConnectionStore>, StoreError> {
        Ok(Box::new(connections::PgConnections::new(self.shared()?)))
    }

    fn runs(&self) -> Result<Box<dyn RunHistory>, StoreError> {
        Ok(Box::new(connections::PgRuns::new(self.shared()?)))
    }

    fn webhooks(&self) -> Result<Box<dyn WebhookStore>, StoreError> {
        Ok(Box::new(connections::PgWebhooks::new(self.shared()?)))
    }

    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let client = self.connection()?;
        let key = lock_key("run", connection);
        let locked: bool = wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))?.get(0);
        Ok(locked.then(|| Box::new(AdvisoryLease { client: Some(client), key }) as Box<dyn Lease>))
    }

    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError> {
        let client = self.connection()?;
        let key = lock_key("refresh", connection);
        wait(client.query_one("SELECT pg_advisory_lock($1)::text", &[&key]))?;
        Ok(Box::new(AdvisoryLease { client: Some(client), key }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The PostgreSQL server the tests use, from `SYNC_HOST_TEST_POSTGRES`
    /// (e.g. `postgres://postgres@127.0.0.1:5432/test`); `None` skips them,
    /// saying how to run them.
    pub fn server() -> Option<String> {
        match std::env::var("SYNC_HOST_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                // Straight to the process's stderr, once: `eprintln!` is
                // captured by the test harness and hidden for a passing test.
                use std::io::Write;
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "skipped: the PostgreSQL store tests; set SYNC_HOST_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test to run them"
                    );
                });
                None
            }
        }
    }

    /// A new, empty database on the test server, dropped with the value.
    pub struct Fresh {
        db: PostgresDatabase,
        admin_url: String,
        name: String,
    }

    impl std::ops::Deref for Fresh {
        type Target = PostgresDatabase;
        fn deref(&self) -> &PostgresDatabase {
            &self.db
        }
    }

    impl Drop for Fresh {
        fn drop(&mut self) {
            let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
            // Close the pool's connections first, or the drop waits for them.
            self.db.pool.close();
            let _ = wait(async move {
                let (client, driver) = tokio_postgres::connect(&admin_url, NoTls).await?;
                tokio::spawn(driver);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            });
        }
    }

    pub fn fresh() -> Option<Fresh> {
        let admin_url = server()?;
        let name = format!("sync_host_test_{:016x}", rand::random::<u64>());
        wait(async {
            let (client, driver) = tokio_postgres::connect(&admin_url, NoTls).await.expect("the test server answers");
            tokio::spawn(driver);
            client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("can create a test database");
        });
        let mut config: tokio_postgres::Config = admin_url.parse().expect("a PostgreSQL URL");
        config.dbname(&name);
        let db = PostgresDatabase::open_config(config, name.clone()).expect("the test database opens");
        Some(Fresh { db, admin_url, name })
    }

    crate::store_suite!(fresh());

    #[test]
    fn a_database_that_does_not_exist_is_named_in_the_error() {
        let Some(admin_url) = server() else { return };
        let mut config: tokio_postgres::Config = admin_url.parse().expect("a PostgreSQL URL");
        config.dbname("sync_host_test_no_such_database");
        let error = PostgresDatabase::open_config(config, "the test server".into()).err().expect("refused");
        let text = error.to_string();
        assert!(text.contains(r#"database "sync_host_test_no_such_database" does not exist"#), "{text}");
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(without_password("postgres://u:s3cret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(without_password("postgres://h/db"), "postgres://h/db");
    }
}
