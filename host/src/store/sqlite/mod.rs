//! The SQLite backend: one database file, a pool of connections (r2d2), the
//! schema from `host/migrations/sqlite` (shared with the Node host, so either
//! host can read what the other wrote), and run locks as OS file locks.

mod checkpoints;
mod locks;
mod migrations;
mod records;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::time::now_us;

use super::sql::connections::SqlConnections;
use super::sql::history::SqlRunHistory;
use super::sql::records::SqlRecordReads;
use super::sql::webhooks::SqlDeliveries;
use super::sql::{Backend, Cell, Dialect, Row, Sql, Value};
use super::{OpenMode, RunWriter, RunWrites, Store, StoreError};

/// SQLite's result codes, named (docs/store.md, "When the store fails"):
/// the write lock held past the busy timeout is the database being busy,
/// not broken; a full disk and a read-only file say so.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let code = error.sqlite_error_code();
        let text = error.to_string();
        match code {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!("{text} (another process held its write lock past the busy timeout)"))
            }
            Some(ErrorCode::DiskFull) => StoreError::Full(text),
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly(text),
            // The disk full under another name: SQLite reports some failed
            // writes (of the WAL index, say) as I/O errors.
            Some(ErrorCode::SystemIoFailure) if last_error_was_no_space() => StoreError::Full(text),
            _ => StoreError::Backend(text),
        }
    }
}

/// Whether the thread's last failed system call found no space left: SQLite
/// reports the I/O error right after it, on this thread.
fn last_error_was_no_space() -> bool {
    std::io::Error::last_os_error().raw_os_error() == Some(28 /* ENOSPC */)
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> Self {
        // r2d2 waits out its connection timeout before it says so: every
        // connection in use, or none can be opened.
        StoreError::Unavailable(format!("no database connection: {error}"))
    }
}

/// Makes the database readable by its owner alone: it holds credentials.
/// SQLite gives its `-wal` and `-shm` files the database file's permissions.
fn protect(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = PathBuf::from(file);
            let Ok(metadata) = std::fs::metadata(&file) else { continue };
            if metadata.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                    StoreError::Backend(format!("cannot make {} private to its owner: {e}", file.display()))
                })?;
            }
        }
    }
    Ok(())
}

/// Opens connections with the settings every user of the file needs.
#[derive(Debug)]
struct Manager {
    path: PathBuf,
}

impl r2d2::ManageConnection for Manager {
    type Connection = rusqlite::Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        let connection = rusqlite::Connection::open(&self.path)?;
        configure(&connection)?;
        Ok(connection)
    }

    fn is_valid(&self, connection: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
        connection.execute_batch("SELECT 1")
    }

    fn has_broken(&self, _: &mut rusqlite::Connection) -> bool {
        false
    }
}

/// WAL lets readers (the API) go on while a run writes; NORMAL keeps commit
/// order on a crash; the busy timeout lets concurrent writers queue. For
/// throughput (measured with `sync-bench`, BENCHMARKS.md): pages are read
/// through a memory map rather than copied by `read`, the WAL is folded into
/// the database every 10,000 pages (40 MiB) rather than every 1,000 (each
/// index page is then written to the database once, not once per batch),
/// and the page cache is 16 MiB.
fn configure(connection: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    connection.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    connection.pragma_update(None, "cache_size", -16_000)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    Ok(())
}

/// One pooled connection used by several stores of one run. A run writes
/// records and checkpoints in turn; on two connections, each write would
/// make the other connection drop its whole page cache (WAL mode detects the
/// change and starts over), which on a large store means reading the indexes
/// back from disk for every batch.
#[derive(Clone)]
pub(super) struct Shared(std::sync::Arc<std::sync::Mutex<r2d2::PooledConnection<Manager>>>);

impl Shared {
    fn new(connection: r2d2::PooledConnection<Manager>) -> Self {
        Shared(std::sync::Arc::new(std::sync::Mutex::new(connection)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, r2d2::PooledConnection<Manager>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Connections in the pool when nothing says more are needed.
const POOL_SIZE: u32 = 8;

/// The pool for `runs_at_once` runs, each holding one connection, and the
/// API's and the deliverer's beside them.
pub fn pool_size(runs_at_once: usize) -> u32 {
    POOL_SIZE.max(u32::try_from(runs_at_once).unwrap_or(u32::MAX).saturating_add(POOL_SIZE))
}

/// Opens `path`, applying the schema's migrations, as a [`Store`].
pub fn open(path: &Path, mode: OpenMode) -> Result<Store, StoreError> {
    open_sized(path, mode, POOL_SIZE)
}

/// [`open`] with at most `connections` open at once.
pub fn open_sized(path: &Path, mode: OpenMode, connections: u32) -> Result<Store, StoreError> {
    if mode == OpenMode::MustExist && !path.exists() {
        return Err(StoreError::Backend(format!(
            "{} does not exist; `sync-host connections add <id> --db {} …` creates it with a connection",
            path.display(),
            path.display()
        )));
    }
    let created = !path.exists();
    let manager = Manager { path: path.to_owned() };
    let mut first = r2d2::ManageConnection::connect(&manager)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    migrations::apply(&mut first).map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
    let holds_secrets: bool = first.query_row("SELECT EXISTS (SELECT 1 FROM credentials)", [], |r| r.get(0))?;
    drop(first);
    if created || holds_secrets {
        protect(path)?;
    }
    let pool = r2d2::Pool::builder()
        .max_size(connections)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(30))
        .build(manager)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    let backend = SqliteBackend { pool };
    Ok(Store {
        connections: Arc::new(SqlConnections(backend.clone())),
        runs: Arc::new(SqlRunHistory(backend.clone())),
        deliveries: Arc::new(SqlDeliveries(backend.clone())),
        records: Arc::new(SqlRecordReads(backend.clone())),
        locks: Arc::new(locks::FileLocks::beside(path)),
        writer: Arc::new(backend),
        location: path.display().to_string(),
    })
}

/// A SQLite database file's pool, as the shared SQL runs on it.
#[derive(Clone)]
struct SqliteBackend {
    pool: r2d2::Pool<Manager>,
}

impl Backend for SqliteBackend {
    fn read<T>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let connection = self.pool.get()?;
        work(&mut SqliteSql(&connection))
    }

    fn write<T>(&self, work: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut connection = self.pool.get()?;
        // The write lock from the start: a concurrent writer waits (busy
        // timeout) instead of failing on a read-then-write upgrade.
        let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let result = work(&mut SqliteSql(&tx))?;
        tx.commit()?;
        Ok(result)
    }
}

impl RunWriter for SqliteBackend {
    fn run_writes(&self) -> Result<RunWrites, StoreError> {
        let shared = Shared::new(self.pool.get()?);
        Ok(RunWrites {
            records: Box::new(records::SqliteRecords::new(shared.clone())),
            checkpoints: Box::new(checkpoints::SqliteCheckpoints::new(shared)),
        })
    }
}

/// A connection (or a transaction, which derefs to one) running the shared SQL.
struct SqliteSql<'a>(&'a rusqlite::Connection);

fn bind<'a>(value: &'a Value<'a>) -> rusqlite::types::ToSqlOutput<'a> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    ToSqlOutput::Borrowed(match *value {
        Value::Null => ValueRef::Null,
        Value::Int(v) => ValueRef::Integer(v),
        Value::Bool(v) => ValueRef::Integer(i64::from(v)),
        Value::Text(v) => ValueRef::Text(v.as_bytes()),
        Value::Bytes(v) => ValueRef::Blob(v),
    })
}

fn cell(value: rusqlite::types::ValueRef<'_>) -> Result<Cell, StoreError> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Real(v) => return Err(StoreError::Corrupt(format!("a real number ({v}) where none is kept"))),
        ValueRef::Text(v) => {
            Cell::Text(String::from_utf8(v.to_vec()).map_err(|_| StoreError::Corrupt("text that is not UTF-8".into()))?)
        }
        ValueRef::Blob(v) => Cell::Bytes(v.to_vec()),
    })
}

impl Sql for SqliteSql<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let bound: Vec<_> = params.iter().map(bind).collect();
        Ok(statement.execute(rusqlite::params_from_iter(bound.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let columns = statement.column_count();
        let bound: Vec<_> = params.iter().map(bind).collect();
        let mut rows = statement.query(rusqlite::params_from_iter(bound.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let cells = (0..columns).map(|i| cell(row.get_ref(i)?)).collect::<Result<_, StoreError>>()?;
            out.push(Row(cells));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database file in a directory removed when the test ends.
    struct Fresh {
        store: Store,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for Fresh {
        type Target = Store;
        fn deref(&self) -> &Store {
            &self.store
        }
    }

    fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("store.sqlite"), OpenMode::Create).unwrap();
        Fresh { store, _dir: dir }
    }

    crate::store_suite!(Some(fresh()));

    #[test]
    fn a_store_opens_and_reads_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        drop(open(&path, OpenMode::Create).unwrap());
        // A backup tool, or another host mid-write.
        let mut holder = rusqlite::Connection::open(&path).unwrap();
        let _held = holder.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        let store = open(&path, OpenMode::MustExist).expect("opening a current schema needs no write lock");
        assert!(store.connections.list().unwrap().is_empty(), "and it reads");
    }

    #[test]
    fn a_missing_file_is_refused_when_it_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let error = open(&dir.path().join("typo.sqlite"), OpenMode::MustExist).err().unwrap();
        let error = error.to_string();
        assert!(error.contains("typo.sqlite does not exist"), "{error}");
        assert!(error.contains("`sync-host connections add <id> --db "), "points to what creates one: {error}");
    }
}
