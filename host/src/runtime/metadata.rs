//! What a component says it is (`describe`), as plain Rust the rest of the
//! host (the API, the command line, the scheduler) can use without the WIT
//! bindings.

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use super::Capabilities;
use crate::bindings::exports::portable_sync::sync::sync::{Metadata, SyncType};
use crate::capabilities::checkpoint::CheckpointCtx;
use crate::capabilities::config::ConfigCtx;
use crate::capabilities::logging::LoggingCtx;
use crate::capabilities::proxy::{ProxyCtx, ProxyLimits};
use crate::capabilities::records::{RecordLimits, RecordsCtx};
use crate::provider::{Pacer, ProviderClient, Quota, RetryPolicy, StaticToken};
use crate::store::{BatchOutcome, Checkpoints, RecordWrites, Scope, StoreError, ValidRecord};

/// A component's `describe()`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncMetadata {
    pub name: String,
    pub description: String,
    pub version: String,
    pub scopes: Vec<String>,
    pub frequency: String,
    pub sync_type: &'static str,
    pub endpoints: Vec<Endpoint>,
    pub models: Vec<Model>,
    pub configuration: Vec<ConfigKey>,
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub method: String,
    pub path: String,
    pub model: String,
    /// The JSON Schema of `model`'s records, when the component declares
    /// the model (the API's OpenAPI document shows it); not in `describe`'s
    /// JSON, which has it under `models`.
    #[serde(skip)]
    pub model_schema: Option<Arc<serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    /// The JSON Schema of one record.
    pub json_schema: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigKey {
    pub name: String,
    pub description: String,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ProviderLimits {
    pub requests_per_minute: u32,
    pub max_concurrent: u32,
    pub throttle_wait_secs: u32,
}

impl ProviderLimits {
    pub fn quota(&self) -> Quota {
        Quota::per_minute(self.requests_per_minute, self.max_concurrent)
    }

    pub fn throttle_wait(&self) -> Duration {
        Duration::from_secs(u64::from(self.throttle_wait_secs))
    }
}

impl SyncMetadata {
    pub(super) fn from_wit(raw: Metadata) -> anyhow::Result<Self> {
        let models = raw
            .models
            .into_iter()
            .map(|m| {
                let json_schema = serde_json::from_str(&m.json_schema)
                    .map_err(|e| anyhow::anyhow!("the JSON Schema of model `{}` is not JSON: {e}", m.name))?;
                Ok(Model { name: m.name, json_schema })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(SyncMetadata {
            name: raw.name,
            description: raw.description,
            version: raw.version,
            scopes: raw.scopes,
            frequency: raw.frequency,
            sync_type: match raw.sync_type {
                SyncType::Full => "full",
                SyncType::Incremental => "incremental",
            },
            endpoints: raw
                .endpoints
                .into_iter()
                .map(|e| Endpoint {
                    model_schema: models.iter().find(|m| m.name == e.model).map(|m| Arc::new(m.json_schema.clone())),
                    method: e.method,
                    path: e.path,
                    model: e.model,
                })
                .collect(),
            models,
            configuration: raw
                .configuration
                .into_iter()
                .map(|k| ConfigKey { name: k.name, description: k.description, required: k.required })
                .collect(),
            limits: ProviderLimits {
                requests_per_minute: raw.limits.requests_per_minute,
                max_concurrent: raw.limits.max_concurrent,
                throttle_wait_secs: raw.limits.throttle_wait_secs,
            },
        })
    }

    /// Refuses configuration keys the component does not declare (a typo
    /// would otherwise be silently ignored).
    pub fn check_config<'a>(&self, keys: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
        let known: Vec<&str> = self.configuration.iter().map(|k| k.name.as_str()).collect();
        match keys.into_iter().find(|key| !known.contains(&key.as_str())) {
            Some(key) => Err(format!(
                "the component `{}` reads no configuration key `{key}` (it reads: {})",
                self.name,
                known.join(", ")
            )),
            None => Ok(()),
        }
    }

    /// How often the component asks to run (`every hour`), if it says so
    /// in a form this host reads.
    pub fn interval(&self) -> Option<Duration> {
        crate::time::every::parse_frequency(&self.frequency)
    }

    /// The names of the models the component declared.
    pub fn model_names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }
}

/// Capabilities for `describe`, which calls none: every store call fails and
/// the proxy has no credentials.
pub(super) fn inert_capabilities() -> anyhow::Result<Capabilities> {
    let client = ProviderClient::new(
        "http://invalid.",
        Arc::new(StaticToken::new(None)),
        RetryPolicy::default(),
        Arc::new(Pacer::new(Quota::default())),
        Duration::ZERO,
    )?;
    Ok(Capabilities {
        proxy: ProxyCtx::new(client, ProxyLimits::default(), Default::default(), None),
        records: RecordsCtx::new(Box::new(Closed), "", Vec::new(), RecordLimits::default(), None),
        checkpoint: CheckpointCtx::new(Box::new(Closed), "", ""),
        config: ConfigCtx::default(),
        logging: LoggingCtx::new("", "describe"),
    })
}

/// Stands in for the stores while `describe` runs.
struct Closed;

fn closed() -> StoreError {
    StoreError::Backend("no store during describe".into())
}

impl RecordWrites for Closed {
    fn save(&mut self, _: &Scope, _: &[ValidRecord]) -> Result<BatchOutcome, StoreError> {
        Err(closed())
    }
    fn delete(&mut self, _: &Scope, _: &[String]) -> Result<BatchOutcome, StoreError> {
        Err(closed())
    }
    fn begin_listing(&mut self, _: &Scope) -> Result<u64, StoreError> {
        Err(closed())
    }
    fn current_listing(&mut self, _: &Scope) -> Result<Option<u64>, StoreError> {
        Err(closed())
    }
    fn keep(&mut self, _: &Scope, _: u64, _: &[String]) -> Result<(), StoreError> {
        Err(closed())
    }
    fn end_listing(&mut self, _: &Scope, _: u64) -> Result<BatchOutcome, StoreError> {
        Err(closed())
    }
    fn abandon_listing(&mut self, _: &Scope, _: u64) -> Result<(), StoreError> {
        Err(closed())
    }
}

impl Checkpoints for Closed {
    fn get(&mut self, _: &str, _: &str) -> Result<Option<String>, StoreError> {
        Err(closed())
    }
    fn save(&mut self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Err(closed())
    }
}
