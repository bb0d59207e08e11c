//! What the host keeps, behind backend-neutral traits: the records a component
//! saves (with change tracking and listings), checkpoints, and the lock that
//! keeps a connection to one run at a time. SQLite is the embedded backend
//! (`sqlite`); semantics in docs/store.md.
//!
//! Every call is one transaction: all of it or nothing. Store handles are
//! cheap and come from a [`Database`], which pools connections.

pub mod connections;
pub mod history;
pub mod postgres;
pub mod records;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;
pub mod webhooks;

use std::path::Path;
use std::sync::Arc;

pub use connections::{
    Connection, ConnectionSecrets, ConnectionStatus, ConnectionStore, ConnectionUpdate, NotificationRoute, Removal,
    StoredCredentials, Tokens,
};
pub use history::{Outcome, RunEnd, RunHistory, RunRecord, Trigger};
pub use records::{
    BatchOutcome, LastAction, ListPage, ListQuery, Position, RecordStore, Scope, StoredRecord, ValidRecord,
};
pub use webhooks::{Delivery, DeliveryStatus, WebhookStore};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

/// A checkpoint backend: one opaque string per connection and sync.
pub trait CheckpointStore: Send {
    fn get(&mut self, connection: &str, sync: &str) -> Result<Option<String>, StoreError>;
    /// Replaces the value atomically.
    fn save(&mut self, connection: &str, sync: &str, value: &str) -> Result<(), StoreError>;
}

/// The stores one run writes to.
pub struct RunStores {
    pub records: Box<dyn RecordStore>,
    pub checkpoints: Box<dyn CheckpointStore>,
}

/// A lock held across processes: a connection's run lock
/// ([`Database::try_lock_run`]) or its token-refresh lock
/// ([`Database::lock_refresh`]), two locks apart. Dropping it lets the next
/// holder in. The lock dies with its process, so a run killed with `kill -9`
/// never blocks the next one.
pub trait Lease: Send {}

/// Where everything the host keeps lives. Handles are cheap; each holds one
/// pooled connection of the backend.
pub trait Database: Send + Sync {
    /// Where it is, for messages (never holds a password).
    fn describe(&self) -> String;
    fn records(&self) -> Result<Box<dyn RecordStore>, StoreError>;
    fn checkpoints(&self) -> Result<Box<dyn CheckpointStore>, StoreError>;
    /// The stores of one run, which a backend may put on one connection.
    fn run_stores(&self) -> Result<RunStores, StoreError>;
    /// Connections, their schedule and their credentials.
    fn connections(&self) -> Result<Box<dyn ConnectionStore>, StoreError>;
    /// The history of runs.
    fn runs(&self) -> Result<Box<dyn RunHistory>, StoreError>;
    /// Webhook deliveries.
    fn webhooks(&self) -> Result<Box<dyn WebhookStore>, StoreError>;
    /// Takes the run lock of `connection`, or `None` if another run holds it
    /// (in this process or another).
    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn Lease>>, StoreError>;
    /// Waits for the token-refresh lock of `connection`: refreshes of one
    /// connection never overlap, in this process or another.
    fn lock_refresh(&self, connection: &str) -> Result<Box<dyn Lease>, StoreError>;
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
pub fn open(location: &str, mode: OpenMode) -> Result<Arc<dyn Database>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresDatabase::open(location)?));
    }
    Ok(Arc::new(sqlite::SqliteDatabase::open(Path::new(location), mode)?))
}
