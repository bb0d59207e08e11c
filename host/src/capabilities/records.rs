//! The `records` and `listing` capabilities: what a component saves, deletes
//! and lists, checked at the boundary and handed to a [`RecordWrites`].
//!
//! The checks (declared model, JSON objects, string ids, no duplicates, the
//! per-run limits) happen here; change tracking and listings are the store's
//! (docs/store.md). Every edge case is exercised by the conformance
//! component (`testing/conformance`), which every host runs; the tests here
//! cover only what a component cannot see (the hash itself).

use std::collections::HashSet;

use super::canonical::{hash_record, HashError};
use super::{Limit, LimitExceeded};
use crate::bindings::portable_sync::sync::{listing as wit_listing, records as wit};
use crate::store::{BatchOutcome, RecordWrites, Scope, StoreError, ValidRecord};

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
    store: Box<dyn RecordWrites>,
    connection: String,
    declared_models: Vec<String>,
    limits: RecordLimits,
    outcome: BatchOutcome,
    tally: Tally,
    progress: Option<Progress>,
}

impl RecordsCtx {
    pub fn new(
        store: Box<dyn RecordWrites>,
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

/// Validates a batch of JSON texts and computes each record's canonical hash
/// (`canonical.rs`).
pub fn validate_batch(records: &[String]) -> Result<Vec<ValidRecord>, BatchError> {
    let mut seen = HashSet::with_capacity(records.len());
    records
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let hashed = hash_record(text).map_err(|e| match e {
                HashError::InvalidJson(reason) => BatchError::InvalidJson { index, reason },
                HashError::NotAnObject => BatchError::NotAnObject { index },
            })?;
            let id = hashed.id.filter(|id| !id.is_empty()).ok_or(BatchError::InvalidId { index })?;
            if !seen.insert(id.clone()) {
                return Err(BatchError::DuplicateId { id });
            }
            Ok(ValidRecord { id, json: text.trim().to_owned(), hash: hashed.hash })
        })
        .collect()
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
