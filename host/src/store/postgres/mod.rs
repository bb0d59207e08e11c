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

mod checkpoints;
mod locks;
mod migrations;
mod records;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use super::sql::connections::SqlConnections;
use super::sql::history::SqlRunHistory;
use super::sql::records::SqlRecordReads;
use super::sql::webhooks::SqlDeliveries;
use super::sql::{Backend, Cell, Dialect, Row, Sql, Value};
use super::{RunWriter, RunWrites, Store, StoreError};

/// The driver's errors, named (docs/store.md, "When the store fails"): a
/// server that is down, restarting or refusing connections is unavailable
/// (the pool drops the broken connection and opens a new one when asked),
/// a full disk is full, a read-only server or standby is read-only.
impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let text = driver_error_text(&error);
        let Some(code) = error.code() else {
            // No answer from the server at all: the socket failed or closed.
            return if error.is_closed() || std::error::Error::source(&error).is_some() {
                StoreError::Unavailable(text)
            } else {
                StoreError::Backend(text)
            };
        };
        let class = &code.code()[..2];
        if *code == SqlState::DISK_FULL {
            StoreError::Full(text)
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StoreError::ReadOnly(text)
        } else if class == "08" // connection exception
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            StoreError::Unavailable(text)
        } else {
            StoreError::Backend(text)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(driver) => match StoreError::from(driver) {
                StoreError::Unavailable(text) => StoreError::Unavailable(format!("no database connection: {text}")),
                other => other,
            },
            // Timed out waiting for a connection, or creating one.
            other => StoreError::Unavailable(format!("no database connection: {}", pool_error_text(&other))),
        }
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

/// The pool the stores of one run take a connection from for each write,
/// and give it back after: a run waiting on its provider holds none
/// (docs/store.md, "Connections").
#[derive(Clone)]
struct WritePool(Pool);

impl WritePool {
    fn client(&self) -> Result<Object, StoreError> {
        Ok(wait(self.0.get())?)
    }
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

/// Connects to `url`, and applies the schema's migrations (several
/// processes starting at once apply each one once), as a [`Store`].
pub fn open(url: &str) -> Result<Store, StoreError> {
    open_sized(url, POOL_SIZE)
}

/// Connections in the pool when nothing says more are needed.
const POOL_SIZE: usize = 16;

/// The pool for `runs_at_once` runs. A run takes a connection only while it
/// writes (its run lock lives on the lock session, outside the pool), so
/// the pool is sized for the writes at once, not the runs, which spend most
/// of their time waiting on the provider; 8 more for the API, the deliverer
/// and the scheduler (docs/store.md, "Connections").
pub fn pool_size(runs_at_once: usize) -> usize {
    POOL_SIZE.max(runs_at_once / 4 + 8)
}

/// [`open`] with at most `connections` open at once.
pub fn open_sized(url: &str, connections: usize) -> Result<Store, StoreError> {
    let shown = without_password(url);
    let config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Backend(format!("{shown} is not a PostgreSQL URL: {e}")))?;
    Ok(open_config(config, shown, connections)?.0)
}

/// The store and its pool (which the tests close).
fn open_config(
    mut config: tokio_postgres::Config,
    shown: String,
    connections: usize,
) -> Result<(Store, Pool), StoreError> {
    // A server that does not answer (a host gone, a firewall dropping
    // packets) fails a request in seconds instead of hanging it: connecting
    // gives up after 10 s unless the URL says otherwise, and keepalives find
    // a dead peer under an idle connection.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.keepalives(true).keepalives_idle(std::time::Duration::from_secs(30));
    let manager =
        Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
        .max_size(connections)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(30)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot set up the pool for {shown}: {e}")))?;
    wait(async {
        let mut client = pool.get().await.map_err(|e| match StoreError::from(e) {
            StoreError::Unavailable(text) => StoreError::Unavailable(format!("cannot connect to {shown}: {text}")),
            other => other,
        })?;
        migrations::apply(&mut client).await?;
        // Said at start-up rather than found out as connections refused
        // under load (docs/store.md, "Connections").
        if let Ok(row) = client.query_one("SHOW max_connections", &[]).await {
            let server_max: usize = row.get::<_, String>(0).parse().unwrap_or(usize::MAX);
            if connections > server_max {
                tracing::warn!(
                    target: "store",
                    "this process may open {connections} connections to {shown}, more than the server's \
                     max_connections ({server_max}) for all its clients: lower --workers or raise max_connections"
                );
            }
        }
        Ok::<(), StoreError>(())
    })?;
    let backend = PgBackend { pool: pool.clone() };
    let store = Store {
        connections: Arc::new(SqlConnections(backend.clone())),
        runs: Arc::new(SqlRunHistory(backend.clone())),
        deliveries: Arc::new(SqlDeliveries(backend.clone())),
        records: Arc::new(SqlRecordReads(backend.clone())),
        locks: Arc::new(locks::AdvisoryLocks::new(pool.clone(), config)),
        writer: Arc::new(backend),
        location: shown,
    };
    Ok((store, pool))
}

/// A PostgreSQL pool, as the shared SQL runs on it.
#[derive(Clone)]
struct PgBackend {
    pool: Pool,
}

impl Backend for PgBackend {
    fn read<T>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let client = wait(self.pool.get())?;
        work(&mut PgSql(&client))
    }

    fn write<T>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut client = wait(self.pool.get())?;
        let tx = wait(client.transaction())?;
        let result = work(&mut PgSql(&tx))?;
        wait(tx.commit())?;
        Ok(result)
    }
}

impl RunWriter for PgBackend {
    fn run_writes(&self) -> Result<RunWrites, StoreError> {
        let pool = WritePool(self.pool.clone());
        Ok(RunWrites {
            records: Box::new(records::PgRecords::new(pool.clone())),
            checkpoints: Box::new(checkpoints::PgCheckpoints::new(pool)),
        })
    }
}

/// A client or a transaction running the shared SQL; statements are
/// prepared once per pooled connection.
struct PgSql<'a, C: GenericClient>(&'a C);

/// A parameter as the statement's type wants it: PostgreSQL's `integer`
/// columns take 4 bytes, its `bigint` columns 8.
impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::BOOL => (v != 0).to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn cells(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = match *ty {
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into())),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into())),
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(Cell::Bool),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Bytes),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "column `{}` has a type the store never uses: {ty}",
                    column.name()
                )))
            }
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

impl<C: GenericClient> Sql for PgSql<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        wait(async {
            let statement = self.0.prepare_cached(sql).await?;
            Ok(self.0.execute(&statement, &params).await?)
        })
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = wait(async {
            let statement = self.0.prepare_cached(sql).await?;
            self.0.query(&statement, &params).await
        })?;
        rows.iter().map(cells).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The PostgreSQL server the tests use, from `SYNC_HOST_TEST_POSTGRES`;
    /// `None` skips them, saying how to run them.
    pub fn server() -> Option<String> {
        pg_scratch::server("the PostgreSQL store tests")
    }

    /// A store on a new, empty database of the test server, dropped with the value.
    pub struct Fresh {
        store: Store,
        pool: Pool,
        database: pg_scratch::ScratchDatabase,
    }

    impl std::ops::Deref for Fresh {
        type Target = Store;
        fn deref(&self) -> &Store {
            &self.store
        }
    }

    impl Drop for Fresh {
        fn drop(&mut self) {
            // Close the pool's connections before the database is dropped.
            self.pool.close();
        }
    }

    pub fn fresh() -> Option<Fresh> {
        let database = pg_scratch::ScratchDatabase::create(&server()?, "sync_host_test");
        let config: tokio_postgres::Config = database.url.parse().expect("a PostgreSQL URL");
        let (store, pool) = open_config(config, database.name.clone(), POOL_SIZE).expect("the test database opens");
        Some(Fresh { store, pool, database })
    }

    crate::store_suite!(fresh());

    #[test]
    fn a_database_that_does_not_exist_is_named_in_the_error() {
        let Some(admin_url) = server() else { return };
        let mut config: tokio_postgres::Config = admin_url.parse().expect("a PostgreSQL URL");
        config.dbname("sync_host_test_no_such_database");
        let error = open_config(config, "the test server".into(), POOL_SIZE).expect_err("refused");
        let text = error.to_string();
        assert!(text.contains(r#"database "sync_host_test_no_such_database" does not exist"#), "{text}");
    }

    #[test]
    fn a_scope_with_records_cannot_be_deleted() {
        let Some(db) = fresh() else { return };
        let scope = crate::store::Scope { connection: "c".into(), model: "Customer".into() };
        let batch = crate::capabilities::records::validate_batch(&[r#"{"id":"1"}"#.to_string()]).unwrap();
        db.run_writes().unwrap().records.save(&scope, &batch).unwrap();
        let delete_scope = || {
            wait(async {
                let client = db.pool.get().await.expect("a connection");
                client.execute("DELETE FROM scopes WHERE connection = 'c'", &[]).await
            })
        };
        let error = delete_scope().expect_err("the scope has a record");
        assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION), "{error:?}");
        assert!(db.records.connection_exists("c").unwrap(), "nothing deleted");
        wait(async {
            let client = db.pool.get().await.expect("a connection");
            client.execute("DELETE FROM records", &[]).await
        })
        .unwrap();
        assert_eq!(delete_scope().unwrap(), 1, "without records it goes");
    }

    /// The server's sessions on the test database, this query's included.
    fn sessions(db: &Fresh) -> i64 {
        wait(async {
            let client = db.pool.get().await.expect("a connection");
            let row = client
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()", &[])
                .await
                .expect("pg_stat_activity");
            row.get(0)
        })
    }

    #[test]
    fn runs_in_flight_hold_no_server_connection_between_writes() {
        let Some(db) = fresh() else { return };
        let before = sessions(&db);
        // Fifty runs in flight, each with its lock and its writes' handle,
        // having written once: what a run waiting on its provider holds.
        let runs: Vec<_> = (0..50)
            .map(|n| {
                let connection = format!("c{n}");
                let lease = db.locks.try_lock_run(&connection).unwrap().expect("free");
                let mut writes = db.run_writes().unwrap();
                writes.checkpoints.save(&connection, "customers", "page 1").unwrap();
                (lease, writes)
            })
            .collect();
        let during = sessions(&db);
        assert!(during <= before + 1, "{before} sessions before, {during} with 50 runs in flight");
        // The locks hold across processes: another store on the database
        // finds the connections busy.
        let other = open_sized(&db.database.url, 4).expect("a second store");
        assert!(other.locks.try_lock_run("c7").unwrap().is_none(), "held by the first store");
        drop(runs);
        assert!(other.locks.try_lock_run("c7").unwrap().is_some(), "released with its run");
    }

    #[test]
    fn run_locks_survive_their_session_being_closed() {
        let Some(db) = fresh() else { return };
        let lease = db.locks.try_lock_run("c").unwrap().expect("free");
        // The server ends the session holding the run locks (a restart, an
        // administrator), which frees them there.
        let ended: i64 = wait(async {
            let client = db.pool.get().await.expect("a connection");
            let row = client
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                     JOIN pg_database d ON d.oid = l.database AND d.datname = current_database() \
                     WHERE l.locktype = 'advisory' AND l.pid <> pg_backend_pid()) ended",
                    &[],
                )
                .await
                .expect("terminated");
            row.get(0)
        });
        assert_eq!(ended, 1, "the one session holding advisory locks");
        // The next lock opens a new session; the old lease's release does
        // not touch it, nor fail.
        let mut taken = None;
        for _ in 0..50 {
            match db.locks.try_lock_run("d") {
                Ok(lease) => {
                    taken = lease;
                    break;
                }
                // The closed session may be found closed only by this call.
                Err(StoreError::Unavailable(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(other) => panic!("{other}"),
            }
        }
        let other = taken.expect("a new session takes locks");
        drop(lease);
        assert!(db.locks.try_lock_run("d").unwrap().is_none(), "d is still held");
        drop(other);
        assert!(db.locks.try_lock_run("d").unwrap().is_some(), "and released");
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(without_password("postgres://u:s3cret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(without_password("postgres://h/db"), "postgres://h/db");
    }
}
