//! The WIT edge: binds the world's imports to [`Platform`] and its exports to
//! [`crate::sync::run`] and [`crate::metadata`]. Only type translation here.

use crate::metadata;
use crate::platform::{HttpResponse, Level, ListingError, Platform};
use crate::qbo::ApiRequest;
use crate::sync::{self, SyncError};

wit_bindgen::generate!({
    world: "sync-component",
    path: "../wit",
});

use exports::portable_sync::sync::sync::{
    ConfigKey, Endpoint, Guest, Metadata, Model, ProviderError, ProviderLimits, RunError, Summary, SyncType,
};
use portable_sync::sync::{checkpoint, config, listing, logging, proxy, records};

struct Component;

impl Guest for Component {
    fn describe() -> Metadata {
        Metadata {
            name: metadata::NAME.into(),
            description: metadata::DESCRIPTION.into(),
            version: metadata::VERSION.into(),
            scopes: metadata::SCOPES.iter().map(|s| s.to_string()).collect(),
            frequency: metadata::FREQUENCY.into(),
            sync_type: SyncType::Incremental,
            endpoints: vec![Endpoint {
                method: metadata::ENDPOINT_METHOD.into(),
                path: metadata::ENDPOINT_PATH.into(),
                model: metadata::MODEL_NAME.into(),
            }],
            models: vec![Model { name: metadata::MODEL_NAME.into(), json_schema: metadata::customer_schema() }],
            configuration: metadata::CONFIGURATION
                .iter()
                .map(|(name, description, required)| ConfigKey {
                    name: name.to_string(),
                    description: description.to_string(),
                    required: *required,
                })
                .collect(),
            limits: ProviderLimits {
                requests_per_minute: metadata::REQUESTS_PER_MINUTE,
                max_concurrent: metadata::MAX_CONCURRENT,
                throttle_wait_secs: metadata::THROTTLE_WAIT_SECS,
            },
        }
    }

    fn run() -> Result<Summary, RunError> {
        match sync::run(&mut WitPlatform) {
            Ok(s) => Ok(Summary {
                pages: s.pages,
                requests: s.requests,
                retries: s.retries,
                saved: s.saved,
                deleted: s.deleted,
            }),
            // The host reports the error; logging it here too would say it twice.
            Err(error) => Err(match error {
                SyncError::Provider(f) => RunError::Provider(ProviderError {
                    status: f.status,
                    code: f.code,
                    message: f.message,
                    detail: f.detail,
                }),
                SyncError::InvalidResponse(m) => RunError::InvalidResponse(m),
                SyncError::MissingConfig(m) => RunError::MissingConfig(m),
                SyncError::InvalidConfig(m) => RunError::InvalidConfig(m),
                SyncError::Proxy(m) => RunError::Proxy(m),
                SyncError::Store(m) => RunError::Store(m),
            }),
        }
    }
}

struct WitPlatform;

impl Platform for WitPlatform {
    fn get(&mut self, request: &ApiRequest) -> Result<HttpResponse, String> {
        let response = proxy::send(&proxy::Request {
            method: proxy::Method::Get,
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: None,
            retry: true,
        })
        .map_err(|e| match e {
            proxy::Error::InvalidPath(m) => format!("invalid path: {m}"),
            proxy::Error::ForbiddenHeader(m) => format!("forbidden header: {m}"),
            proxy::Error::Timeout(m) => format!("timeout: {m}"),
            proxy::Error::ConnectionFailed(m) => format!("connection failed: {m}"),
            proxy::Error::Unauthorized(m) => format!("unauthorized: {m}"),
        })?;
        Ok(HttpResponse { status: response.status, body: response.body, attempts: response.attempts })
    }

    fn save(&mut self, model: &str, records: Vec<String>) -> Result<(), String> {
        records::batch_save(model, &records).map(|_| ()).map_err(records_error)
    }

    fn delete(&mut self, model: &str, ids: Vec<String>) -> Result<(), String> {
        records::batch_delete(model, &ids).map(|_| ()).map_err(records_error)
    }

    fn begin_listing(&mut self, model: &str) -> Result<u64, String> {
        listing::begin(model).map_err(records_error)
    }

    fn current_listing(&mut self, model: &str) -> Result<Option<u64>, String> {
        listing::current(model).map_err(records_error)
    }

    fn end_listing(&mut self, model: &str, id: u64) -> Result<u32, ListingError> {
        listing::end(model, id).map(|outcome| outcome.deleted).map_err(|e| match e {
            records::Error::NoListing(m) => ListingError::NotOpen(m),
            other => ListingError::Store(records_error(other)),
        })
    }

    fn load_checkpoint(&mut self) -> Result<Option<String>, String> {
        checkpoint::get().map_err(|checkpoint::Error::Store(m)| m)
    }

    fn save_checkpoint(&mut self, value: &str) -> Result<(), String> {
        checkpoint::save(value).map_err(|checkpoint::Error::Store(m)| m)
    }

    fn config(&mut self, key: &str) -> Option<String> {
        config::get(key)
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
        };
        logging::log(level, message);
    }
}

fn records_error(error: records::Error) -> String {
    match error {
        records::Error::UndeclaredModel(m) => format!("undeclared model: {m}"),
        records::Error::InvalidJson(m) => format!("invalid JSON: {m}"),
        records::Error::InvalidId(m) => format!("invalid id: {m}"),
        records::Error::DuplicateId(m) => format!("duplicate id: {m}"),
        records::Error::NoListing(m) => format!("no listing: {m}"),
        records::Error::Store(m) => m,
    }
}

export!(Component);
