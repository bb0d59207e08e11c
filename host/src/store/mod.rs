//! What the host keeps, behind backend-neutral traits: the records a component
//! saves (with change tracking and listings), checkpoints, and the lock that
//! keeps a connection to one run at a time. SQLite is the embedded backend
//! (`sqlite`); semantics in docs/store.md.
//!
//! Every call is one transaction: all of it or nothing. Store handles are
//! cheap and come from a [`Database`], which pools connections.

pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// The records of one model of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub connection: String,
    pub model: String,
}

/// A record that passed the capability's checks: its id, its JSON text and
/// the SHA-256 of its canonical form (keys sorted, no whitespace), which
/// decides "changed".
#[derive(Debug, Clone)]
pub struct ValidRecord {
    pub id: String,
    pub json: String,
    pub hash: [u8; 32],
}

/// How a call changed the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub deleted: u32,
}

impl BatchOutcome {
    /// Whether anything in the store changed.
    pub fn changed(&self) -> bool {
        self.added + self.updated + self.deleted > 0
    }
}

impl std::ops::AddAssign for BatchOutcome {
    fn add_assign(&mut self, other: Self) {
        self.added += other.added;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
    }
}

/// What the store says of a record's last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LastAction {
    Added,
    Updated,
    Deleted,
}

impl LastAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LastAction::Added => "ADDED",
            LastAction::Updated => "UPDATED",
            LastAction::Deleted => "DELETED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ADDED" => Some(LastAction::Added),
            "UPDATED" => Some(LastAction::Updated),
            "DELETED" => Some(LastAction::Deleted),
            _ => None,
        }
    }
}

/// A position in (`last_modified_at`, `id`) order; records strictly after it follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub last_modified_us: i64,
    pub id: String,
}

/// A page request over one scope, in (`last_modified_at`, `id`) order.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only records with `last_modified_at >=` this (microseconds since the epoch).
    pub modified_after_us: Option<i64>,
    /// Only records after this position.
    pub after: Option<Position>,
    /// Only records whose last action is one of these; empty means all.
    pub actions: Vec<LastAction>,
    /// At most this many records.
    pub limit: u32,
}

/// One stored record with its tracking metadata.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub id: String,
    pub json: String,
    pub first_seen_us: i64,
    pub last_modified_us: i64,
    pub last_action: LastAction,
    pub deleted_us: Option<i64>,
}

/// A page of records and whether more follow.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub records: Vec<StoredRecord>,
    pub has_more: bool,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    #[error("store holds a corrupt row: {0}")]
    Corrupt(String),
    /// The listing named is not the open listing of the scope; nothing changed.
    #[error("listing {listing} of `{model}` is not open ({})", match .open { Some(open) => format!("listing {open} is"), None => "no listing is".into() })]
    NoListing { model: String, listing: u64, open: Option<u64> },
}

/// A records backend. Each call is one transaction: all of it or nothing.
pub trait RecordStore: Send {
    /// Saves records: new ids ADDED, changed payloads (or deleted ids) UPDATED,
    /// identical payloads untouched. With a listing open, every record of the
    /// batch counts as seen by it.
    fn save(&mut self, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError>;
    /// Soft-deletes by id; unknown or already deleted ids do nothing.
    fn delete(&mut self, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError>;
    /// Opens a new listing of the scope, superseding an open one; returns its id.
    fn begin_listing(&mut self, scope: &Scope) -> Result<u64, StoreError>;
    /// The open listing of the scope, if any.
    fn current_listing(&mut self, scope: &Scope) -> Result<Option<u64>, StoreError>;
    /// Counts live ids as seen by `listing`, which must be the open one.
    fn keep(&mut self, scope: &Scope, listing: u64, ids: &[String]) -> Result<(), StoreError>;
    /// Ends `listing`, which must be the open one: soft-deletes the live
    /// records it did not see and closes it.
    fn end_listing(&mut self, scope: &Scope, listing: u64) -> Result<BatchOutcome, StoreError>;
    /// Closes `listing` without deleting; nothing if it is not open.
    fn abandon_listing(&mut self, scope: &Scope, listing: u64) -> Result<(), StoreError>;
    /// A page of records in (`last_modified_at`, `id`) order.
    fn list(&mut self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError>;
    /// Whether the connection has ever been synced.
    fn connection_exists(&mut self, connection: &str) -> Result<bool, StoreError>;
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

/// Held while a run of a connection goes on; dropping it lets another run in.
/// The lock dies with its process, so a run killed with `kill -9` never
/// blocks the next one.
pub trait RunLease: Send {}

/// Where everything the host keeps lives. Handles are cheap; each holds one
/// pooled connection of the backend.
pub trait Database: Send + Sync {
    /// Where it is, for messages (never holds a password).
    fn describe(&self) -> String;
    fn records(&self) -> Result<Box<dyn RecordStore>, StoreError>;
    fn checkpoints(&self) -> Result<Box<dyn CheckpointStore>, StoreError>;
    /// The stores of one run, which a backend may put on one connection.
    fn run_stores(&self) -> Result<RunStores, StoreError>;
    /// Takes the run lock of `connection`, or `None` if another run holds it
    /// (in this process or another).
    fn try_lock_run(&self, connection: &str) -> Result<Option<Box<dyn RunLease>>, StoreError>;
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

/// Opens the database named on the command line: a SQLite file path.
pub fn open(location: &str, mode: OpenMode) -> Result<Arc<dyn Database>, StoreError> {
    Ok(Arc::new(sqlite::SqliteDatabase::open(Path::new(location), mode)?))
}
