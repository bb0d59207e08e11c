//! Records with change tracking, and listings: the types and the backend trait.

use serde::Serialize;

use super::StoreError;

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
    /// Only records with one of these ids; empty means all.
    pub ids: Vec<String>,
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

/// What a run writes: records and listings of its scopes, on one connection
/// of the backend for the whole run ([`super::Store::run_writes`]). Each call
/// is one transaction: all of it or nothing.
pub trait RecordWrites: Send {
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
}

/// What the API reads of the records ([`super::Store::records`]); each call
/// on a connection of the backend's pool.
pub trait RecordReads: Send + Sync {
    /// A page of records in (`last_modified_at`, `id`) order.
    fn list(&self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError>;
    /// Whether the connection has ever been synced.
    fn connection_exists(&self, connection: &str) -> Result<bool, StoreError>;
    /// How many live (not deleted) records the scope holds.
    fn count(&self, scope: &Scope) -> Result<u64, StoreError>;
}
