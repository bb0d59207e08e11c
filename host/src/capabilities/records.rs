//! The `records` and `listing` capabilities: what a component saves, deletes
//! and lists, checked at the boundary and handed to a [`RecordStore`].
//!
//! The checks (declared model, JSON objects, string ids, no duplicates, the
//! per-run limits) happen here; change tracking and listings are the store's
//! (docs/store.md). Every edge case is exercised by the conformance
//! component (`testing/conformance`), which every host runs; the tests here
//! cover only what a component cannot see (the hash itself).

use sha2::{Digest, Sha256};
use std::collections::HashSet;

use super::{Limit, LimitExceeded};
use crate::bindings::portable_sync::sync::{listing as wit_listing, records as wit};
use crate::store::{BatchOutcome, RecordStore, Scope, StoreError, ValidRecord};

/// A progress callback: the run's totals after each call that changed the store.
pub type Progress = Box<dyn FnMut(&BatchOutcome) + Send>;

/// What a run changed, per model; shared with whoever started the run, so
/// it is known even when the run fails.
pub type Tally = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, BatchOutcome>>>;

/// Limits on what one call may carry.
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    /// Records (or ids) in one batch.
    pub records_per_batch: usize,
    /// Bytes of one record's JSON text.
    pub bytes_per_record: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits { records_per_batch: 10_000, bytes_per_record: 1 << 20 }
    }
}

/// The records capability of one run.
pub struct RecordsCtx {
    store: Box<dyn RecordStore>,
    connection: String,
    declared_models: Vec<String>,
    limits: RecordLimits,
    outcome: BatchOutcome,
    tally: Tally,
    progress: Option<Progress>,
}

impl RecordsCtx {
    pub fn new(
        store: Box<dyn RecordStore>,
        connection: &str,
        declared_models: Vec<String>,
        limits: RecordLimits,
        progress: Option<Progress>,
    ) -> Self {
        RecordsCtx {
            store,
            connection: connection.to_owned(),
            declared_models,
            limits,
            outcome: BatchOutcome::default(),
            tally: Tally::default(),
            progress,
        }
    }

    /// Counts what the run changes per model into `tally`.
    pub fn with_tally(mut self, tally: Tally) -> Self {
        self.tally = tally;
        self
    }

    /// What the run changed so far.
    pub fn outcome(&self) -> BatchOutcome {
        self.outcome
    }

    /// The capability check: only models the component declared in `describe`.
    fn scope_for(&self, model: &str) -> Result<Scope, wit::Error> {
        check_declared(&self.declared_models, model).map_err(wit::Error::UndeclaredModel)?;
        Ok(Scope { connection: self.connection.clone(), model: model.to_owned() })
    }

    fn check_batch_size(&self, len: usize) -> wasmtime::Result<()> {
        if len > self.limits.records_per_batch {
            return Err(LimitExceeded::new(
                Limit::RecordsPerBatch,
                self.limits.records_per_batch as u64,
                format!("a batch of {len}"),
            )
            .into());
        }
        Ok(())
    }

    fn record_outcome(&mut self, model: &str, outcome: BatchOutcome) {
        self.outcome += outcome;
        *self.tally.lock().unwrap_or_else(|p| p.into_inner()).entry(model.to_owned()).or_default() += outcome;
        if let Some(progress) = self.progress.as_mut() {
            progress(&self.outcome);
        }
    }
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

/// Feeds the canonical form of `value` (object keys sorted by their UTF-8
/// bytes, no whitespace) to `hasher`. Sorting here, rather than relying on
/// serde_json's map order, keeps the hash stable whichever serde_json
/// features the build enables.
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

impl From<StoreError> for wit::Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoListing { .. } => wit::Error::NoListing(error.to_string()),
            other => wit::Error::Store(other.to_string()),
        }
    }
}

impl From<BatchOutcome> for wit::BatchOutcome {
    fn from(o: BatchOutcome) -> Self {
        wit::BatchOutcome { added: o.added, updated: o.updated, unchanged: o.unchanged, deleted: o.deleted }
    }
}

/// Runs a call that either traps (a limit) or answers the component.
type Answer<T> = wasmtime::Result<Result<T, wit::Error>>;

impl wit::Host for RecordsCtx {
    fn batch_save(&mut self, model: String, records: Vec<String>) -> Answer<wit::BatchOutcome> {
        self.check_batch_size(records.len())?;
        if let Some((index, text)) = records.iter().enumerate().find(|(_, t)| t.len() > self.limits.bytes_per_record) {
            return Err(LimitExceeded::new(
                Limit::BytesPerRecord,
                self.limits.bytes_per_record as u64,
                format!("record {index} has {} bytes", text.len()),
            )
            .into());
        }
        let scope = match self.scope_for(&model) {
            Ok(scope) => scope,
            Err(error) => return Ok(Err(error)),
        };
        let valid = match validate_batch(&records) {
            Ok(valid) => valid,
            Err(error) => return Ok(Err(error.into())),
        };
        if valid.is_empty() {
            return Ok(Ok(BatchOutcome::default().into()));
        }
        Ok(match self.store.save(&scope, &valid) {
            Ok(outcome) => {
                self.record_outcome(&scope.model, outcome);
                Ok(outcome.into())
            }
            Err(error) => Err(error.into()),
        })
    }

    fn batch_delete(&mut self, model: String, ids: Vec<String>) -> Answer<wit::BatchOutcome> {
        self.check_batch_size(ids.len())?;
        let scope = match self.scope_for(&model) {
            Ok(scope) => scope,
            Err(error) => return Ok(Err(error)),
        };
        if let Err(error) = validate_ids(&ids) {
            return Ok(Err(error.into()));
        }
        if ids.is_empty() {
            return Ok(Ok(BatchOutcome::default().into()));
        }
        Ok(match self.store.delete(&scope, &ids) {
            Ok(outcome) => {
                self.record_outcome(&scope.model, outcome);
                Ok(outcome.into())
            }
            Err(error) => Err(error.into()),
        })
    }
}

impl wit_listing::Host for RecordsCtx {
    fn begin(&mut self, model: String) -> Answer<u64> {
        Ok(self.scope_for(&model).and_then(|scope| self.store.begin_listing(&scope).map_err(Into::into)))
    }

    fn current(&mut self, model: String) -> Answer<Option<u64>> {
        Ok(self.scope_for(&model).and_then(|scope| self.store.current_listing(&scope).map_err(Into::into)))
    }

    fn keep(&mut self, model: String, listing: u64, ids: Vec<String>) -> Answer<()> {
        self.check_batch_size(ids.len())?;
        let scope = match self.scope_for(&model) {
            Ok(scope) => scope,
            Err(error) => return Ok(Err(error)),
        };
        if let Err(error) = validate_ids(&ids) {
            return Ok(Err(error.into()));
        }
        Ok(self.store.keep(&scope, listing, &ids).map_err(Into::into))
    }

    fn end(&mut self, model: String, listing: u64) -> Answer<wit::BatchOutcome> {
        let scope = match self.scope_for(&model) {
            Ok(scope) => scope,
            Err(error) => return Ok(Err(error)),
        };
        Ok(match self.store.end_listing(&scope, listing) {
            Ok(outcome) => {
                if outcome.deleted > 0 {
                    tracing::info!(target: "records", listing, deleted = outcome.deleted, "listing ended: records it did not see deleted");
                }
                self.record_outcome(&scope.model, outcome);
                Ok(outcome.into())
            }
            Err(error) => Err(error.into()),
        })
    }

    fn abandon(&mut self, model: String, listing: u64) -> Answer<()> {
        Ok(self.scope_for(&model).and_then(|scope| self.store.abandon_listing(&scope, listing).map_err(Into::into)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(texts: &[&str]) -> Result<Vec<ValidRecord>, BatchError> {
        validate_batch(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_text() {
        // The Node host computes the same value; a database either wrote stays comparable.
        let record = batch(&[r#"{ "z": "é\n", "id": "7", "a": [true, null, -3] }"#]).unwrap().remove(0);
        let canonical = r#"{"a":[true,null,-3],"id":"7","z":"é\n"}"#;
        assert_eq!(record.hash, <[u8; 32]>::from(Sha256::digest(canonical.as_bytes())));
    }
}
