//! The WIT edge: binds the world's imports to [`Platform`] and its exports to
//! [`crate::sync::run`] and [`crate::metadata`]. Only type translation here.

use crate::metadata;
use crate::platform::{HttpResponse, Level, Platform};
use crate::qbo::ApiRequest;
use crate::sync::{self, SyncError};

wit_bindgen::generate!({
    world: "sync-component",
    path: "../wit",
});

use exports::portable_sync::sync::sync::{
    Endpoint, Guest, Metadata, Model, ProviderError, RunError, Summary, SyncType,
};
use portable_sync::sync::{checkpoint, config, logging, proxy, records};

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
            Err(error) => {
                Err(match error {
                    SyncError::Provider(f) => RunError::Provider(ProviderError {
                        status: f.status,
                        code: f.code,
                        message: f.message,
                        detail: f.detail,
                    }),
                    SyncError::InvalidResponse(m) => RunError::InvalidResponse(m),
                    SyncError::MissingConfig(m) => RunError::MissingConfig(m),
                    SyncError::Proxy(m) => RunError::Proxy(m),
                    SyncError::Store(m) => RunError::Store(m),
                })
            }
        }
    }
}

struct WitPlatform;

impl Platform for WitPlatform {
    fn get(&mut self, request: &ApiRequest, max_retries: u32) -> Result<HttpResponse, String> {
        let response = proxy::send(&proxy::Request {
            method: proxy::Method::Get,
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: None,
            max_retries,
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
        records::Error::Store(m) => m,
    }
}

export!(Component);
