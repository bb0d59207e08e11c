//! The records capability: what a component saves and deletes, with change
//! tracking (ADDED / UPDATED / DELETED) as Nango's records cache does it.
//!
//! [`RecordStore`] is the backend-neutral interface; [`sqlite::SqliteStore`]
//! is the default backend. The WIT adapter at the bottom validates a batch
//! (declared model, JSON objects, string ids, no duplicates) and delegates.

pub mod sqlite;

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

use crate::bindings::portable_sync::sync::records as wit;
use crate::runtime::RunState;

/// The records of one model of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub connection: String,
    pub model: String,
}

/// A record that passed validation: its id, its JSON text and the hash of its
/// canonical form (keys sorted, no whitespace), which decides "changed".
#[derive(Debug, Clone)]
pub struct ValidRecord {
    pub id: String,
    pub json: String,
    pub hash: [u8; 32],
}

/// How a batch changed the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub deleted: u32,
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
    #[error("records store: {0}")]
    Backend(String),
    #[error("records store holds a corrupt row: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// A records backend. Each call is one transaction: all of it or nothing.
pub trait RecordStore: Send {
    /// Saves records: new ids ADDED, changed payloads (or deleted ids) UPDATED,
    /// identical payloads untouched.
    fn save(&mut self, scope: &Scope, records: &[ValidRecord]) -> Result<BatchOutcome, StoreError>;
    /// Soft-deletes by id; unknown or already deleted ids do nothing.
    fn delete(&mut self, scope: &Scope, ids: &[String]) -> Result<BatchOutcome, StoreError>;
    /// A page of records in (`last_modified_at`, `id`) order.
    fn list(&mut self, scope: &Scope, query: &ListQuery) -> Result<ListPage, StoreError>;
    /// Whether the connection has ever been synced.
    fn connection_exists(&mut self, connection: &str) -> Result<bool, StoreError>;
}

/// Why a batch was refused before it reached the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record {index} is not valid JSON: {reason}")]
    InvalidJson { index: usize, reason: String },
    #[error("record {index} is not a JSON object")]
    NotAnObject { index: usize },
    #[error("record {index} has no string `id`")]
    InvalidId { index: usize },
    #[error("id `{id}` appears more than once in the batch")]
    DuplicateId { id: String },
}

/// Validates a batch of JSON texts and computes each record's canonical hash.
pub fn validate_batch(records: &[String]) -> Result<Vec<ValidRecord>, BatchError> {
    let mut seen = HashSet::with_capacity(records.len());
    records
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| BatchError::InvalidJson { index, reason: e.to_string() })?;
            let object = value.as_object().ok_or(BatchError::NotAnObject { index })?;
            let id = match object.get("id") {
                Some(serde_json::Value::String(id)) if !id.is_empty() => id.clone(),
                _ => return Err(BatchError::InvalidId { index }),
            };
            if !seen.insert(id.clone()) {
                return Err(BatchError::DuplicateId { id });
            }
            let mut hasher = Sha256::new();
            hash_canonical(&value, &mut hasher);
            Ok(ValidRecord { id, json: text.trim().to_owned(), hash: hasher.finalize().into() })
        })
        .collect()
}

/// Feeds the canonical form of `value` (object keys sorted, no whitespace) to
/// `hasher`. Sorting here, rather than relying on serde_json's map order, keeps
/// the hash stable whichever serde_json features the build enables.
fn hash_canonical(value: &serde_json::Value, hasher: &mut Sha256) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            hasher.update(b"{");
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    hasher.update(b",");
                }
                hasher.update(serde_json::to_string(key).expect("a string serializes").as_bytes());
                hasher.update(b":");
                hash_canonical(item, hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    hasher.update(b",");
                }
                hash_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(serde_json::to_string(scalar).expect("a scalar serializes").as_bytes()),
    }
}

/// A component may only write the models it declared in `describe`.
pub fn check_declared(declared: &[String], model: &str) -> Result<(), String> {
    if declared.iter().any(|m| m == model) {
        Ok(())
    } else {
        Err(format!("model `{model}` was not declared by the component (declared: {})", declared.join(", ")))
    }
}

/// Validates ids for a delete batch.
pub fn validate_ids(ids: &[String]) -> Result<(), BatchError> {
    let mut seen = HashSet::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        if id.is_empty() {
            return Err(BatchError::InvalidId { index });
        }
        if !seen.insert(id.as_str()) {
            return Err(BatchError::DuplicateId { id: id.clone() });
        }
    }
    Ok(())
}

impl From<BatchError> for wit::Error {
    fn from(error: BatchError) -> Self {
        let message = error.to_string();
        match error {
            BatchError::InvalidJson { .. } | BatchError::NotAnObject { .. } => wit::Error::InvalidJson(message),
            BatchError::InvalidId { .. } => wit::Error::InvalidId(message),
            BatchError::DuplicateId { .. } => wit::Error::DuplicateId(message),
        }
    }
}

impl From<BatchOutcome> for wit::BatchOutcome {
    fn from(o: BatchOutcome) -> Self {
        wit::BatchOutcome { added: o.added, updated: o.updated, unchanged: o.unchanged, deleted: o.deleted }
    }
}

impl RunState {
    /// The capability check: only models the component declared in `describe`.
    fn scope_for(&self, model: &str) -> Result<Scope, wit::Error> {
        check_declared(&self.declared_models, model).map_err(wit::Error::UndeclaredModel)?;
        Ok(Scope { connection: self.connection_id.clone(), model: model.to_owned() })
    }

    fn record_outcome(&mut self, outcome: BatchOutcome) {
        self.outcome += outcome;
        if let Some(progress) = self.progress.as_mut() {
            progress(&self.outcome);
        }
    }
}

impl wit::Host for RunState {
    fn batch_save(&mut self, model: String, records: Vec<String>) -> Result<wit::BatchOutcome, wit::Error> {
        let scope = self.scope_for(&model)?;
        let valid = validate_batch(&records)?;
        let outcome = self.records.save(&scope, &valid).map_err(|e| wit::Error::Store(e.to_string()))?;
        self.record_outcome(outcome);
        Ok(outcome.into())
    }

    fn batch_delete(&mut self, model: String, ids: Vec<String>) -> Result<wit::BatchOutcome, wit::Error> {
        let scope = self.scope_for(&model)?;
        validate_ids(&ids)?;
        let outcome = self.records.delete(&scope, &ids).map_err(|e| wit::Error::Store(e.to_string()))?;
        self.record_outcome(outcome);
        Ok(outcome.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(texts: &[&str]) -> Result<Vec<ValidRecord>, BatchError> {
        validate_batch(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let records = batch(&[r#"{"id":"1","a":1,"b":[1,{"y":1,"x":2}]}"#, r#"{ "b": [1, 2], "a": 1, "id": "2" }"#]).unwrap();
        let same = batch(&[r#"{"b":[1,{"x":2,"y":1}],"id":"1","a":1}"#]).unwrap();
        assert_eq!(records[0].hash, same[0].hash);
        assert_ne!(records[0].hash, records[1].hash);
    }

    #[test]
    fn only_declared_models_may_be_written() {
        let declared = vec!["Customer".to_string()];
        assert!(check_declared(&declared, "Customer").is_ok());
        let error = check_declared(&declared, "Invoice").unwrap_err();
        assert!(error.contains("`Invoice`") && error.contains("Customer"), "{error}");
        assert!(check_declared(&declared, "customer").is_err(), "model names are exact");
    }

    #[test]
    fn bad_batches_are_named() {
        assert!(matches!(batch(&["{"]), Err(BatchError::InvalidJson { index: 0, .. })));
        assert!(matches!(batch(&[r#"{"id":"1"}"#, "[1]"]), Err(BatchError::NotAnObject { index: 1 })));
        assert!(matches!(batch(&[r#"{"id":1}"#]), Err(BatchError::InvalidId { index: 0 })));
        assert!(matches!(batch(&[r#"{"name":"x"}"#]), Err(BatchError::InvalidId { index: 0 })));
        assert!(matches!(batch(&[r#"{"id":""}"#]), Err(BatchError::InvalidId { index: 0 })));
        assert!(matches!(
            batch(&[r#"{"id":"1"}"#, r#"{"id":"1"}"#]),
            Err(BatchError::DuplicateId { id }) if id == "1"
        ));
        assert!(validate_ids(&["a".into(), "a".into()]).is_err());
    }
}
