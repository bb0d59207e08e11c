//! The SQLite backend: one database file, a pool of connections (r2d2), the
//! schema from `host/migrations/sqlite` (shared with the Node host, so either
//! host can read what the other wrote), and run locks as OS file locks.

mod checkpoints;
mod connections;
mod migrations;
mod records;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use crate::time::now_us;

pub use checkpoints::SqliteCheckpoints;
pub use connections::{SqliteConnections, SqliteRuns};
pub use records::SqliteRecords;
pub use webhooks::SqliteWebhooks;

use super::{
    CheckpointStore, ConnectionStore, Database, Lease, OpenMode, RecordStore, RunHistory, RunStores, StoreError,
    WebhookStore,
};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> Self {
        StoreError::Backend(format!("no database connection: {error}"))
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

/// A SQLite database file with its pool.
pub struct SqliteDatabase {
    path: PathBuf,
    pool: r2d2::Pool<Manager>,
}

impl SqliteDatabase {
    /// Opens `path`, applying the schema's migrations.
    pub fn open(path: &Path, mode: OpenMode) -> Result<Self, StoreError> {
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
            .max_size(8)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        Ok(SqliteDatabase { path: path.to_owned(), pool })
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        Ok(self.pool.get()?)
    }

    /// The directory of run locks, beside the database file as SQLite keeps
    /// its `-wal` and `-shm` files: one empty file per connection ever run.
    fn lock_path(&self, connection: &str, kind: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(connection.as_bytes());
        let name = hex::encode(&digest[..12]);
        let mut dir = self.path.clone().into_os_string();
        dir.push("-locks");
        PathBuf::from(dir).join(format!("{name}.{kind}.lock"))
    }
}

impl Database for SqliteDatabase {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn records(&self) -> Result<Box<dyn RecordStore>, StoreError> {
        Ok(Box::new(SqliteRecords::new(Shared::new(self.connection()?))))
    }

    fn checkpoints(&self) -> Result<Box<dyn CheckpointStore>, StoreError> {
        Ok(Box::new(SqliteCheckpoints::new(Shared::new(self.connection()?))))
    }

    fn run_stores(&self) -> Result<RunStores, StoreError> {
        let shared = Shared::new(self.connection()?);
        Ok(RunStores {
            records: Box::new(SqliteRecords::new(shared.clone())),
            checkpoints: Box::new(SqliteCheckpoints::new(shared)),
        })
    }

    fn connections(&self) -> Result<Box<dyn ConnectionStore>, StoreError> {
        Ok(Box::new(SqliteConnections::new(Shared::new(self.connection()?))))
    }

    fn runs(&self) -> Result<Box<dyn RunHistory>, StoreError> {
        Ok(Box::new(SqliteRuns::new(Shared::new(self.connection()?))))
    }

    fn webhooks(&self) -> Result<Box<dyn WebhookStore>, StoreError> {
        Ok(Box::new(SqliteWebhooks::new(Shared::new(self.connection()?))))
    }

    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let file = self.lock_file(&self.lock_path(connection, "run"))?;
        // An OS lock (flock) belongs to the open file: it is released when the
        // holder drops it or dies, however it dies.
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FileLease { _file: file }))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Backend(format!("cannot take a run lock: {e}"))),
        }
    }

    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError> {
        let file = self.lock_file(&self.lock_path(connection, "refresh"))?;
        file.lock().map_err(|e| StoreError::Backend(format!("cannot take a refresh lock: {e}")))?;
        Ok(Box::new(FileLease { _file: file }))
    }
}

impl SqliteDatabase {
    fn lock_file(&self, path: &Path) -> Result<std::fs::File, StoreError> {
        let dir = path.parent().expect("a lock file has a directory");
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create the lock directory {}: {e}", dir.display())))?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::Backend(format!("cannot open the lock file {}: {e}", path.display())))
    }
}

struct FileLease {
    _file: std::fs::File,
}

impl Lease for FileLease {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database file in a directory removed when the test ends.
    struct Fresh {
        db: SqliteDatabase,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for Fresh {
        type Target = SqliteDatabase;
        fn deref(&self) -> &SqliteDatabase {
            &self.db
        }
    }

    fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDatabase::open(&dir.path().join("store.sqlite"), OpenMode::Create).unwrap();
        Fresh { db, _dir: dir }
    }

    crate::store_suite!(Some(fresh()));

    #[test]
    fn a_missing_file_is_refused_when_it_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let error = SqliteDatabase::open(&dir.path().join("typo.sqlite"), OpenMode::MustExist).err().unwrap();
        let error = error.to_string();
        assert!(error.contains("typo.sqlite does not exist"), "{error}");
        assert!(error.contains("`sync-host connections add <id> --db "), "points to what creates one: {error}");
    }
}
