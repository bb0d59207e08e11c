//! What the host keeps, behind backend-neutral traits, one per concern: the
//! records a component saves (with change tracking and listings) and what
//! the API reads of them, checkpoints, connections, run history, webhook
//! deliveries, and the locks that keep a connection to one run at a time.
//! SQLite (`sqlite`) is the embedded backend, PostgreSQL (`postgres`) the
//! shared one; the SQL they share is in `sql`. Semantics in docs/store.md.
//!
//! Every call is one transaction: all of it or nothing.

pub mod checkpoints;
pub mod connections;
pub mod history;
pub mod locks;
pub mod postgres;
pub mod records;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;
pub mod webhooks;

use std::path::Path;
use std::sync::Arc;

pub use checkpoints::Checkpoints;
pub use connections::{
    Connection, ConnectionSecrets, ConnectionStatus, ConnectionUpdate, Connections, NotificationRoute, Removal,
    StoredCredentials, Tokens,
};
pub use history::{Outcome, RunEnd, RunHistory, RunRecord, Trigger};
pub use locks::{Lease, Locks};
pub use records::{
    BatchOutcome, LastAction, ListPage, ListQuery, Position, RecordReads, RecordWrites, Scope, StoredRecord,
    ValidRecord,
};
pub use webhooks::{Deliveries, Delivery, DeliveryStatus, WebhookFormat};

/// A store failure. The first three are the database's state, not the
/// request's fault: they pass (docs/store.md, "When the store fails"), and
/// the API answers them 503 with `Retry-After`, the runner fails the run and
/// retries it after its backoff.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy: PostgreSQL stopped,
    /// restarting or refusing connections; a SQLite file whose write lock
    /// another process held past the busy timeout.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The disk under the database is full.
    #[error("store full: {0}")]
    Full(String),
    /// The database reads but refuses writes (a read-only file or mount,
    /// PostgreSQL's `default_transaction_read_only`, a hot standby).
    #[error("store read-only: {0}")]
    ReadOnly(String),
    #[error("store: {0}")]
    Backend(String),
    #[error("store holds a corrupt row: {0}")]
    Corrupt(String),
    /// A connection with this id exists already.
    #[error("connection `{0}` exists already")]
    ConnectionExists(String),
    /// The listing named is not the open listing of the scope; nothing changed.
    #[error("listing {listing} of `{model}` is not open ({})", match .open { Some(open) => format!("listing {open} is"), None => "no listing is".into() })]
    NoListing { model: String, listing: u64, open: Option<u64> },
}

impl StoreError {
    /// Whether the failure is the database's passing state (unreachable,
    /// busy, full, read-only) rather than a fault of the request or the data.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full(_) | StoreError::ReadOnly(_))
    }
}

/// What one run writes, on one connection of the backend for the whole run:
/// a run writes records and checkpoints in turn, and on SQLite two
/// connections would each drop the other's page cache on every write.
pub struct RunWrites {
    pub records: Box<dyn RecordWrites>,
    pub checkpoints: Box<dyn Checkpoints>,
}

/// Opens [`RunWrites`]: how a backend hands a run its connection.
pub trait RunWriter: Send + Sync {
    fn run_writes(&self) -> Result<RunWrites, StoreError>;
}

/// Where everything the host keeps lives: one cheap handle per concern,
/// each taking a connection of the backend's pool per call. Clones share
/// the pool.
#[derive(Clone)]
pub struct Store {
    pub connections: Arc<dyn Connections>,
    pub runs: Arc<dyn RunHistory>,
    pub deliveries: Arc<dyn Deliveries>,
    /// What the API reads of the records.
    pub records: Arc<dyn RecordReads>,
    pub locks: Arc<dyn Locks>,
    writer: Arc<dyn RunWriter>,
    location: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("location", &self.location).finish_non_exhaustive()
    }
}

impl Store {
    /// Where it is, for messages (never holds a password).
    pub fn describe(&self) -> &str {
        &self.location
    }

    /// The connection a run writes its records and checkpoints on.
    pub fn run_writes(&self) -> Result<RunWrites, StoreError> {
        self.writer.run_writes()
    }
}

/// How to open a database: must it exist already?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it (and its schema) if missing.
    Create,
    /// Refuse a database that does not exist (a mistyped path would otherwise
    /// serve an empty new one).
    MustExist,
}

/// Opens the database named on the command line: a `postgres://` URL, or a
/// SQLite file path. (`mode` concerns files: a PostgreSQL database must exist
/// already and gets its tables on first use.)
pub fn open(location: &str, mode: OpenMode) -> Result<Store, StoreError> {
    open_for(location, mode, 0)
}

/// [`open`], with connections enough for `runs_at_once` runs in flight
/// besides the API and the deliverer: a run holds its store connections
/// while it waits on the provider (one on SQLite; on PostgreSQL also its run
/// lock's), so a pool smaller than the scheduler's workers would make them
/// wait their turn (docs/store.md, "Connections").
pub fn open_for(location: &str, mode: OpenMode, runs_at_once: usize) -> Result<Store, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return postgres::open_sized(location, postgres::pool_size(runs_at_once));
    }
    sqlite::open_sized(Path::new(location), mode, sqlite::pool_size(runs_at_once))
}

/// [`open`], waiting up to `wait` for a database that cannot be reached
/// ([`StoreError::Unavailable`]: PostgreSQL starting or restarting, say),
/// trying again after 1, 2, 4 … seconds (at most 10), each wait logged.
/// Any other error, or one past `wait`, is returned at once.
pub fn open_waiting(
    location: &str,
    mode: OpenMode,
    wait: std::time::Duration,
    runs_at_once: usize,
) -> Result<Store, StoreError> {
    let started = std::time::Instant::now();
    let mut attempt = 0;
    loop {
        match open_for(location, mode, runs_at_once) {
            Err(StoreError::Unavailable(why)) if started.elapsed() < wait => {
                attempt += 1;
                let left = wait.saturating_sub(started.elapsed());
                let pause = crate::schedule::doubling(
                    std::time::Duration::from_secs(1),
                    attempt,
                    std::time::Duration::from_secs(10),
                )
                .min(left);
                tracing::warn!(target: "store", attempt, "store unavailable: {why}; trying again in {pause:?} (giving up after {wait:?})");
                std::thread::sleep(pause);
            }
            other => return other,
        }
    }
}
