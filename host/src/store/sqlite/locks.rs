//! Run and token-refresh locks as OS file locks, in a directory beside the
//! database file (as SQLite keeps its `-wal` and `-shm` files): one empty
//! file per connection and lock ever taken.

use std::path::{Path, PathBuf};

use crate::store::{Lease, Locks, StoreError};

pub(super) struct FileLocks {
    dir: PathBuf,
}

impl FileLocks {
    /// The locks of the database file `database`.
    pub(super) fn beside(database: &Path) -> Self {
        let mut dir = database.as_os_str().to_owned();
        dir.push("-locks");
        FileLocks { dir: PathBuf::from(dir) }
    }

    fn open(&self, connection: &str, kind: &str) -> Result<std::fs::File, StoreError> {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(connection.as_bytes());
        let path = self.dir.join(format!("{}.{kind}.lock", hex::encode(&digest[..12])));
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            StoreError::Backend(format!("cannot create the lock directory {}: {e}", self.dir.display()))
        })?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Backend(format!("cannot open the lock file {}: {e}", path.display())))
    }
}

/// An OS lock (flock) belongs to the open file: it is released when the
/// holder drops it or dies, however it dies.
struct FileLease {
    _file: std::fs::File,
}

impl Lease for FileLease {}

impl Locks for FileLocks {
    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        let file = self.open(connection, "run")?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FileLease { _file: file }))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Backend(format!("cannot take a run lock: {e}"))),
        }
    }

    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError> {
        let file = self.open(connection, "refresh")?;
        file.lock().map_err(|e| StoreError::Backend(format!("cannot take a refresh lock: {e}")))?;
        Ok(Box::new(FileLease { _file: file }))
    }
}
